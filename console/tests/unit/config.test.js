// config.json parsing: the three auth kinds, and errors that name the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { parseConfig, loadConfig } from '../../src/config.js';

const COGNITO = {
  api: 'https://abc123.execute-api.eu-west-1.amazonaws.com/',
  auth: {
    kind: 'cognito',
    region: 'eu-west-1',
    userPoolId: 'eu-west-1_AbC123',
    userPoolClientId: '1example23456789',
    identityPoolId: 'eu-west-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
    domain: 'mir-dev.auth.eu-west-1.amazoncognito.com',
    redirectUri: 'https://console.example.com/',
  },
};

test('the local config is the same origin with no sign-in', () => {
  assert.deepEqual(parseConfig({ api: '', auth: { kind: 'none' } }), { api: '', auth: { kind: 'none' } });
  assert.deepEqual(parseConfig({}), { api: '', auth: { kind: 'none' } });
});

test('a token config keeps the API base without its trailing slash', () => {
  assert.deepEqual(parseConfig({ api: 'http://10.0.0.5:8180/', auth: { kind: 'token' } }), {
    api: 'http://10.0.0.5:8180',
    auth: { kind: 'token' },
  });
});

test('a cognito config is read with every field', () => {
  const c = parseConfig(COGNITO);
  assert.equal(c.api, 'https://abc123.execute-api.eu-west-1.amazonaws.com');
  assert.equal(c.auth.kind, 'cognito');
  assert.equal(c.auth.domain, 'mir-dev.auth.eu-west-1.amazoncognito.com');
  assert.equal(c.auth.userPoolId, 'eu-west-1_AbC123');
  assert.equal(c.auth.redirectUri, 'https://console.example.com/');
});

test('a cognito config may give the API inside auth and defaults the redirect to the page', () => {
  const { api, auth } = COGNITO;
  const c = parseConfig({ auth: { ...auth, api, redirectUri: undefined } }, 'https://cdn.example.net/index.html');
  assert.equal(c.api, 'https://abc123.execute-api.eu-west-1.amazonaws.com');
  assert.equal(c.auth.redirectUri, 'https://cdn.example.net/index.html');
});

test('an unknown auth kind is refused by name', () => {
  assert.throws(() => parseConfig({ auth: { kind: 'basic' } }), {
    message: 'config.json: auth.kind must be "none", "token" or "cognito", not "basic"',
  });
});

test('a cognito config names the field that is missing or wrong', () => {
  const without = (field) => ({ ...COGNITO, auth: { ...COGNITO.auth, [field]: undefined } });
  assert.throws(() => parseConfig(without('userPoolClientId')), { message: 'config.json: auth.userPoolClientId must be a non-empty string' });
  assert.throws(() => parseConfig({ ...COGNITO, auth: { ...COGNITO.auth, region: 'mars' } }), { message: 'config.json: auth.region is not an AWS region: "mars"' });
  assert.throws(() => parseConfig({ ...COGNITO, auth: { ...COGNITO.auth, userPoolId: 'us-east-1_X' } }), /auth\.userPoolId must look like eu-west-1_AbC123/);
  assert.throws(() => parseConfig({ ...COGNITO, auth: { ...COGNITO.auth, identityPoolId: 'nope' } }), /auth\.identityPoolId must look like eu-west-1:<uuid>/);
  assert.throws(() => parseConfig({ ...COGNITO, api: 'http://insecure.example.com' }), { message: 'config.json: api must be an https:// URL' });
  assert.throws(() => parseConfig({ ...COGNITO, api: '' , auth: { ...COGNITO.auth } }), { message: 'config.json: auth.api must be the https:// URL of the API (SigV4 signs for its host)' });
});

test('an API base that is not a URL is refused', () => {
  assert.throws(() => parseConfig({ api: 'not a url', auth: { kind: 'none' } }), { message: 'config.json: api is not a URL: "not a url"' });
  assert.throws(() => parseConfig({ api: 'ftp://x.example', auth: { kind: 'none' } }), { message: 'config.json: api must be an http(s) URL, not ftp:' });
  assert.throws(() => parseConfig([]), { message: 'config.json: (the document) must be a JSON object' });
});

test('loadConfig reads ./config.json and reports an unreadable file', async () => {
  const ok = async (url) => {
    assert.equal(url, './config.json');
    return new Response(JSON.stringify({ api: '', auth: { kind: 'token' } }));
  };
  assert.deepEqual(await loadConfig(ok), { api: '', auth: { kind: 'token' } });
  const missing = async () => new Response('nope', { status: 404 });
  await assert.rejects(loadConfig(missing), { message: 'config.json: (the file) could not be read: HTTP 404' });
  const broken = async () => new Response('{');
  await assert.rejects(loadConfig(broken), /config\.json: \(the document\) is not JSON/);
});
