// Cognito sign-in for the console on AWS:
// 1. the hosted UI, authorization code with PKCE (S256);
// 2. the code exchanged at https://<domain>/oauth2/token for the id, access and refresh tokens;
// 3. Cognito Identity GetId + GetCredentialsForIdentity with the id token: temporary AWS
//    credentials of the identity pool's role for the user's group;
// 4. every API call signed with SigV4 (service execute-api) by aws4fetch.

import { AwsClient } from 'aws4fetch';

const TOKENS_KEY = 'mir.console.cognito.tokens';
const PKCE_KEY = 'mir.console.cognito.pkce';

function base64url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString(bytes = 32) {
  const buf = new Uint8Array(bytes);
  crypto.getRandomValues(buf);
  return base64url(buf);
}

/** The S256 code challenge of a PKCE verifier. */
export async function codeChallenge(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** The hosted UI's authorize URL for a verifier and state. */
export async function authorizeUrl(auth, verifier, state) {
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: auth.userPoolClientId,
    redirect_uri: auth.redirectUri,
    scope: 'openid email profile',
    code_challenge_method: 'S256',
    code_challenge: await codeChallenge(verifier),
    state,
  });
  return `https://${auth.domain}/oauth2/authorize?${q}`;
}

async function cognitoJson(resp, what) {
  const body = await resp.text();
  let json = {};
  try {
    json = body ? JSON.parse(body) : {};
  } catch {
    // keep the text
  }
  if (!resp.ok) {
    const why = json.error_description || json.message || json.error || json.__type || body || `HTTP ${resp.status}`;
    throw new Error(`${what} failed: ${why}`);
  }
  return json;
}

async function tokenRequest(auth, params) {
  const resp = await fetch(`https://${auth.domain}/oauth2/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: auth.userPoolClientId, ...params }),
  });
  const t = await cognitoJson(resp, 'the token exchange');
  return {
    idToken: t.id_token,
    accessToken: t.access_token,
    refreshToken: t.refresh_token ?? params.refresh_token,
    expiresAt: Date.now() + (t.expires_in ?? 3600) * 1000,
  };
}

async function identityCall(auth, target, body) {
  const resp = await fetch(`https://cognito-identity.${auth.region}.amazonaws.com/`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/x-amz-json-1.1',
      'X-Amz-Target': `AWSCognitoIdentityService.${target}`,
    },
    body: JSON.stringify(body),
  });
  return cognitoJson(resp, target);
}

/** Temporary AWS credentials for a signed-in user (GetId, then GetCredentialsForIdentity). */
export async function identityCredentials(auth, idToken) {
  const Logins = { [`cognito-idp.${auth.region}.amazonaws.com/${auth.userPoolId}`]: idToken };
  const { IdentityId } = await identityCall(auth, 'GetId', { IdentityPoolId: auth.identityPoolId, Logins });
  const { Credentials: c } = await identityCall(auth, 'GetCredentialsForIdentity', { IdentityId, Logins });
  return {
    accessKeyId: c.AccessKeyId,
    secretAccessKey: c.SecretKey,
    sessionToken: c.SessionToken,
    expiresAt: Number(c.Expiration) * 1000,
  };
}

/** Sign-in state kept in sessionStorage across the hosted UI's redirect. */
export class CognitoAuth {
  constructor(auth, storage = sessionStorage) {
    this.auth = auth;
    this.storage = storage;
    this.tokens = JSON.parse(storage.getItem(TOKENS_KEY) ?? 'null');
    this.credentials = null;
    this.signer = null;
  }

  get signedIn() {
    return Boolean(this.tokens?.idToken);
  }

  /** Sends the browser to the hosted UI. */
  async signIn() {
    const verifier = randomString(48);
    const state = randomString(16);
    // The hosted UI sends the browser back to redirectUri: the page asked for is kept.
    this.storage.setItem(PKCE_KEY, JSON.stringify({ verifier, state, returnTo: window.location.hash }));
    window.location.assign(await authorizeUrl(this.auth, verifier, state));
  }

  /** On the redirect back (`?code=…&state=…`): exchanges the code, then cleans the URL. */
  async completeSignIn(url = new URL(window.location.href)) {
    const code = url.searchParams.get('code');
    if (!code) return false;
    const pending = JSON.parse(this.storage.getItem(PKCE_KEY) ?? 'null');
    this.storage.removeItem(PKCE_KEY);
    if (!pending || pending.state !== url.searchParams.get('state')) {
      throw new Error('the sign-in answer does not match the sign-in this console started; sign in again');
    }
    this.tokens = await tokenRequest(this.auth, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: this.auth.redirectUri,
      code_verifier: pending.verifier,
    });
    this.storage.setItem(TOKENS_KEY, JSON.stringify(this.tokens));
    url.searchParams.delete('code');
    url.searchParams.delete('state');
    window.history.replaceState(null, '', url.pathname + url.search + (url.hash || pending.returnTo || ''));
    return true;
  }

  signOut() {
    this.storage.removeItem(TOKENS_KEY);
    this.tokens = null;
    this.credentials = null;
    this.signer = null;
    const q = new URLSearchParams({ client_id: this.auth.userPoolClientId, logout_uri: this.auth.redirectUri });
    window.location.assign(`https://${this.auth.domain}/logout?${q}`);
  }

  /** A SigV4 signer with valid credentials, refreshing tokens and credentials as needed. */
  async ensureSigner() {
    const soon = Date.now() + 60_000;
    if (this.tokens.expiresAt < soon && this.tokens.refreshToken) {
      this.tokens = await tokenRequest(this.auth, { grant_type: 'refresh_token', refresh_token: this.tokens.refreshToken });
      this.storage.setItem(TOKENS_KEY, JSON.stringify(this.tokens));
      this.credentials = null;
    }
    if (!this.credentials || this.credentials.expiresAt < soon) {
      this.credentials = await identityCredentials(this.auth, this.tokens.idToken);
      this.signer = new AwsClient({
        accessKeyId: this.credentials.accessKeyId,
        secretAccessKey: this.credentials.secretAccessKey,
        sessionToken: this.credentials.sessionToken,
        service: 'execute-api',
        region: this.auth.region,
      });
    }
    return this.signer;
  }

  async fetch(url, init) {
    const signer = await this.ensureSigner();
    return signer.fetch(url, init);
  }
}
