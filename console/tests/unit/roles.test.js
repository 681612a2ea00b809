// Roles from cognito:groups and what each may call (the jobs of infra/cdk/lib/operator-access.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { can, describeRoles, jobOfChangingRoute, rolesFromGroups, rolesFromIdToken } from '../../src/auth/roles.js';
import { Session } from '../../src/auth/session.js';

function idToken(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'RS256' })}.${b64(claims)}.signature`;
}

class MemoryStorage {
  constructor() {
    this.m = new Map();
  }
  getItem(k) {
    return this.m.has(k) ? this.m.get(k) : null;
  }
  setItem(k, v) {
    this.m.set(k, String(v));
  }
  removeItem(k) {
    this.m.delete(k);
  }
}

test('the roles are the known groups of the id token', () => {
  assert.deepEqual(rolesFromGroups(['operator', 'everyone', 'readOnly']), ['readOnly', 'operator']);
  assert.deepEqual(rolesFromGroups(undefined), []);
  assert.deepEqual(rolesFromIdToken(idToken({ sub: 'u1', 'cognito:groups': ['provisioner'] })), ['provisioner']);
  assert.deepEqual(rolesFromIdToken(idToken({ sub: 'u1' })), []);
  assert.equal(describeRoles(['operator', 'provisioner']), 'operator + provisioner');
  assert.equal(describeRoles([]), 'no role');
});

test('read-only may only read', () => {
  const r = ['readOnly'];
  assert.equal(can(r, 'GET', '/v1/devices'), true);
  assert.equal(can(r, 'GET', '/v1/events?deviceId=x'), true);
  assert.equal(can(r, 'POST', '/v1/commands'), false);
  assert.equal(can(r, 'POST', '/v1/config'), false);
  assert.equal(can(r, 'PATCH', '/v1/devices/weather'), false);
});

test('an operator sends commands and configuration and refreshes schemas, but does not edit devices', () => {
  const r = ['operator'];
  assert.equal(can(r, 'POST', '/v1/commands'), true);
  assert.equal(can(r, 'POST', '/v1/config'), true);
  assert.equal(can(r, 'POST', '/v1/devices/weather/schema/refresh'), true);
  assert.equal(can(r, 'POST', '/v1/devices'), false);
  assert.equal(can(r, 'PATCH', '/v1/devices/weather'), false);
  assert.equal(can(r, 'DELETE', '/v1/devices/weather'), false);
  assert.equal(can(r, 'POST', '/v1/devices/weather/certificate'), false);
});

test('a provisioner creates, edits and deletes devices, but sends nothing to them', () => {
  const r = ['provisioner'];
  assert.equal(can(r, 'POST', '/v1/devices'), true);
  assert.equal(can(r, 'PUT', '/v1/devices/weather'), true);
  assert.equal(can(r, 'PATCH', '/v1/devices/weather'), true);
  assert.equal(can(r, 'DELETE', '/v1/devices/weather'), true);
  assert.equal(can(r, 'POST', '/v1/commands'), false);
  assert.equal(can(r, 'POST', '/v1/devices/weather/schema/refresh'), false);
});

test('an admin may do everything and no role may do nothing', () => {
  for (const [m, p] of [['DELETE', '/v1/devices/x'], ['POST', '/v1/commands'], ['GET', '/v1/telemetry']]) {
    assert.equal(can(['admin'], m, p), true, `${m} ${p}`);
    assert.equal(can([], m, p), false, `${m} ${p}`);
  }
  assert.equal(jobOfChangingRoute('/v1/unknown'), null);
  assert.equal(can(['operator'], 'POST', '/v1/unknown'), false);
});

test('locally the session is admin; with a token it asks once, keeps it in session storage and sends it', async () => {
  assert.deepEqual(new Session({ api: '', auth: { kind: 'none' } }, new MemoryStorage()).roles, ['admin']);
  const storage = new MemoryStorage();
  const s = new Session({ api: '', auth: { kind: 'token' } }, storage);
  assert.equal(s.signedIn, false);
  assert.throws(() => s.setToken('  '), { message: "token: enter the hub's access.apiToken" });
  s.setToken('secret-token-123456');
  assert.equal(s.signedIn, true);
  assert.deepEqual(s.roles, ['admin']);
  assert.equal(new Session({ api: '', auth: { kind: 'token' } }, storage).signedIn, true, 'kept for the tab');

  const seen = [];
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (url, init) => {
    seen.push(init.headers.get('Authorization'));
    return new Response('{}', { status: seen.length === 1 ? 200 : 401 });
  };
  try {
    await s.fetch('/v1/devices', {});
    assert.equal(seen[0], 'Bearer secret-token-123456');
    await s.fetch('/v1/devices', {});
    assert.equal(s.signedIn, false, 'a refused token is forgotten, so the console asks again');
  } finally {
    globalThis.fetch = realFetch;
  }
});

test('a cognito session takes its roles from the signed-in id token', () => {
  const storage = new MemoryStorage();
  const config = { api: 'https://x.example', auth: { kind: 'cognito', region: 'eu-west-1', userPoolId: 'eu-west-1_A', userPoolClientId: 'c', identityPoolId: 'i', domain: 'd.example', redirectUri: 'https://c.example/' } };
  assert.deepEqual(new Session(config, storage).roles, [], 'nobody signed in: no role');
  storage.setItem('mir.console.cognito.tokens', JSON.stringify({ idToken: idToken({ email: 'op@example.com', 'cognito:groups': ['operator'] }), expiresAt: Date.now() + 3600e3 }));
  const s = new Session(config, storage);
  assert.equal(s.signedIn, true);
  assert.deepEqual(s.roles, ['operator']);
  assert.equal(s.user, 'op@example.com');
});
