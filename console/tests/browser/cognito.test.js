// The console as deployed on AWS, in headless Chromium with AWS played by the test:
// config.json of kind cognito; the hosted UI (authorize), the token endpoint and Cognito
// Identity answered by page routes; the API at https://api.mir.test forwarded to the
// local hub once the test has checked its SigV4 signature. Then: sign-in with PKCE,
// temporary credentials, signed calls, and the role from cognito:groups hiding what the
// role may not do.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

import { consoleUrl, launch, pageErrors, screenshot } from '../support/browser.js';

const WAIT = { timeout: 60_000 };
const base = consoleUrl();
const API = 'https://api.mir.test';
const DOMAIN = 'mir-test.auth.eu-west-1.amazoncognito.com';
const CONFIG = {
  api: API,
  auth: {
    kind: 'cognito',
    region: 'eu-west-1',
    userPoolId: 'eu-west-1_TestPool1',
    userPoolClientId: 'console-client-id',
    identityPoolId: 'eu-west-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
    domain: DOMAIN,
    redirectUri: `${base}/`,
  },
};

function jwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'RS256', kid: 'test' })}.${b64(claims)}.c2lnbmF0dXJl`;
}

const CORS = {
  'access-control-allow-origin': new URL(base).origin,
  'access-control-allow-headers': 'authorization, accept, content-type, x-amz-date, x-amz-security-token, x-amz-content-sha256, x-amz-target, x-amz-user-agent',
  'access-control-allow-methods': 'GET, POST, PUT, PATCH, DELETE',
};

/** Plays AWS for one page; `seen` records what the console sent. */
async function playAws(page, groups) {
  const seen = { authorize: null, token: null, identity: [], api: [] };
  // The hub's page, without its CSP (which allows only its own origin, as mir local should).
  await page.route((url) => url.origin === new URL(base).origin && url.pathname === '/', async (route) => {
    const resp = await route.fetch();
    const headers = { ...resp.headers() };
    delete headers['content-security-policy'];
    await route.fulfill({ response: resp, headers });
  });
  await page.route(`${base}/config.json`, (route) => route.fulfill({ json: CONFIG }));
  await page.route(`https://${DOMAIN}/oauth2/authorize?**`, (route) => {
    const u = new URL(route.request().url());
    seen.authorize = Object.fromEntries(u.searchParams);
    const back = new URL(seen.authorize.redirect_uri);
    back.searchParams.set('code', 'test-code');
    back.searchParams.set('state', seen.authorize.state);
    return route.fulfill({ contentType: 'text/html', body: `<script>location.replace(${JSON.stringify(back.toString())})</script>` });
  });
  await page.route(`https://${DOMAIN}/oauth2/token`, (route) => {
    if (route.request().method() === 'OPTIONS') return route.fulfill({ status: 204, headers: CORS });
    seen.token = Object.fromEntries(new URLSearchParams(route.request().postData()));
    const idToken = jwt({ sub: 'u-1', email: 'ada@example.com', 'cognito:groups': groups, exp: Math.floor(Date.now() / 1000) + 3600 });
    return route.fulfill({ headers: CORS, json: { id_token: idToken, access_token: 'access', refresh_token: 'refresh', expires_in: 3600, token_type: 'Bearer' } });
  });
  await page.route('https://cognito-identity.eu-west-1.amazonaws.com/', (route) => {
    const r = route.request();
    if (r.method() === 'OPTIONS') return route.fulfill({ status: 204, headers: CORS });
    const target = r.headers()['x-amz-target'];
    seen.identity.push({ target, body: JSON.parse(r.postData()) });
    const json =
      target === 'AWSCognitoIdentityService.GetId'
        ? { IdentityId: 'eu-west-1:11111111-2222-3333-4444-555555555555' }
        : { IdentityId: 'eu-west-1:11111111-2222-3333-4444-555555555555', Credentials: { AccessKeyId: 'ASIATESTKEY', SecretKey: 'test-secret', SessionToken: 'test-session', Expiration: Math.floor(Date.now() / 1000) + 3600 } };
    return route.fulfill({ headers: { ...CORS, 'content-type': 'application/x-amz-json-1.1' }, body: JSON.stringify(json) });
  });
  await page.route(`${API}/**`, async (route) => {
    const r = route.request();
    if (r.method() === 'OPTIONS') return route.fulfill({ status: 204, headers: CORS });
    const h = r.headers();
    seen.api.push({ method: r.method(), url: r.url(), authorization: h.authorization, token: h['x-amz-security-token'] });
    if (!/^AWS4-HMAC-SHA256 Credential=ASIATESTKEY\/\d{8}\/eu-west-1\/execute-api\/aws4_request, SignedHeaders=[^,]+, Signature=[0-9a-f]{64}$/.test(h.authorization ?? '')) {
      return route.fulfill({ status: 403, headers: CORS, json: { message: 'Missing Authentication Token' } });
    }
    const resp = await route.fetch({ url: r.url().replace(API, base), headers: { accept: 'application/json', 'content-type': 'application/json' } });
    return route.fulfill({ response: resp, headers: { ...resp.headers(), ...CORS } });
  });
  return seen;
}

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test('an operator signs in through the hosted UI with PKCE and every API call is signed for execute-api', async () => {
  const page = await browser.context.newPage();
  const errors = pageErrors(page);
  const seen = await playAws(page, ['operator']);
  await page.goto(`${base}/#/devices`);
  await page.getByRole('button', { name: 'Sign in with Cognito' }).click();
  await page.locator('[data-testid=fleet] tbody tr', { hasText: 'weather' }).waitFor(WAIT);

  assert.equal(seen.authorize.response_type, 'code');
  assert.equal(seen.authorize.client_id, 'console-client-id');
  assert.equal(seen.authorize.code_challenge_method, 'S256');
  assert.equal(seen.token.grant_type, 'authorization_code');
  assert.equal(seen.token.code, 'test-code');
  const challenge = createHash('sha256').update(seen.token.code_verifier).digest('base64url');
  assert.equal(challenge, seen.authorize.code_challenge, 'the verifier sent is the one of the challenge');
  assert.deepEqual(
    seen.identity.map((c) => c.target),
    ['AWSCognitoIdentityService.GetId', 'AWSCognitoIdentityService.GetCredentialsForIdentity'],
  );
  assert.equal(seen.identity[0].body.IdentityPoolId, CONFIG.auth.identityPoolId);
  assert.ok(seen.identity[0].body.Logins['cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool1'], 'the id token is the login');
  assert.ok(seen.api.length >= 1);
  assert.ok(seen.api.every((c) => c.token === 'test-session'), 'the session token goes with every call');
  assert.doesNotMatch(page.url(), /code=/, 'the code is removed from the address');

  assert.equal(await page.getByTestId('role').innerText(), 'operator');
  assert.match(await page.getByTestId('who').innerText(), /ada@example\.com/);
  assert.equal(await page.getByRole('button', { name: 'New device' }).count(), 0, 'an operator creates no device');
  await page.getByLabel('select weather', { exact: true }).check();
  assert.equal(await page.locator('.selection a', { hasText: 'Send a command' }).count(), 1, 'an operator sends commands');
  await page.locator('[data-testid=fleet] a', { hasText: 'weather' }).click();
  await page.locator('.facts').waitFor(WAIT);
  assert.equal(await page.getByLabel('twin', { exact: true }).count(), 0, 'an operator does not edit the twin');
  assert.equal(await page.getByRole('button', { name: 'Refresh schema' }).count(), 1);
  assert.equal(await page.getByRole('button', { name: 'Delete device' }).count(), 0);
  await screenshot(page, 'cognito-operator');
  assert.deepEqual(errors, []);
  await page.close();
});

test('a read-only user sees the fleet and the devices but no action', async () => {
  const page = await browser.context.newPage();
  const seen = await playAws(page, ['readOnly']);
  await page.goto(`${base}/#/devices/weather/commands`);
  await page.getByRole('button', { name: 'Sign in with Cognito' }).click();
  await page.getByText('Your role may not send commands.').waitFor(WAIT);
  assert.equal(await page.getByTestId('role').innerText(), 'readOnly');
  assert.equal(await page.getByRole('button', { name: 'Send command' }).count(), 0);
  assert.ok(seen.api.every((c) => c.method === 'GET'), 'nothing but reads was sent');
  await page.goto(`${base}/#/devices/weather`);
  await page.locator('.facts').waitFor(WAIT);
  assert.equal(await page.getByRole('button', { name: 'Refresh schema' }).count(), 0);
  assert.equal(await page.getByLabel('twin', { exact: true }).count(), 0);
  await page.close();
});
