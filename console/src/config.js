// The console's configuration, read from `./config.json` at start:
//   {"api": "", "auth": {"kind": "none"}}            mir local on loopback (api "" = same origin)
//   {"api": "", "auth": {"kind": "token"}}           a hub with access.apiToken (Bearer token)
//   {"api": "https://…", "auth": {"kind": "cognito", region, userPoolId, userPoolClientId,
//     identityPoolId, domain, redirectUri}}          AWS: Cognito sign-in, SigV4-signed calls
// parseConfig checks it and names the field that is wrong.

export class ConfigError extends Error {
  constructor(field, problem) {
    super(`config.json: ${field} ${problem}`);
    this.name = 'ConfigError';
    this.field = field;
  }
}

const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;
const POOL_ID = /^[a-z]{2}(-[a-z]+)+-\d+_[0-9A-Za-z]+$/;
const IDENTITY_POOL_ID = /^[a-z]{2}(-[a-z]+)+-\d+:[0-9a-f-]{36}$/;
const HOST = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/;

function text(obj, field, path) {
  const v = obj[field];
  if (typeof v !== 'string' || v.trim() === '') {
    throw new ConfigError(path + field, 'must be a non-empty string');
  }
  return v.trim();
}

function apiBase(value, field, mustBeAbsolute) {
  if (value === undefined || value === null) value = '';
  if (typeof value !== 'string') throw new ConfigError(field, 'must be a string (a URL, or "" for this origin)');
  const api = value.trim().replace(/\/+$/, '');
  if (api === '') {
    if (mustBeAbsolute) throw new ConfigError(field, 'must be the https:// URL of the API (SigV4 signs for its host)');
    return '';
  }
  let url;
  try {
    url = new URL(api);
  } catch {
    throw new ConfigError(field, `is not a URL: ${JSON.stringify(api)}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError(field, `must be an http(s) URL, not ${url.protocol}`);
  }
  if (mustBeAbsolute && url.protocol !== 'https:') {
    throw new ConfigError(field, 'must be an https:// URL');
  }
  return api;
}

function cognito(auth, topApi, origin) {
  const p = 'auth.';
  const region = text(auth, 'region', p);
  if (!REGION.test(region)) throw new ConfigError('auth.region', `is not an AWS region: ${JSON.stringify(region)}`);
  const userPoolId = text(auth, 'userPoolId', p);
  if (!POOL_ID.test(userPoolId) || !userPoolId.startsWith(region + '_')) {
    throw new ConfigError('auth.userPoolId', `must look like ${region}_AbC123, not ${JSON.stringify(userPoolId)}`);
  }
  const userPoolClientId = text(auth, 'userPoolClientId', p);
  const identityPoolId = text(auth, 'identityPoolId', p);
  if (!IDENTITY_POOL_ID.test(identityPoolId) || !identityPoolId.startsWith(region + ':')) {
    throw new ConfigError('auth.identityPoolId', `must look like ${region}:<uuid>, not ${JSON.stringify(identityPoolId)}`);
  }
  const domain = text(auth, 'domain', p)
    .replace(/^https:\/\//, '')
    .replace(/\/+$/, '')
    .toLowerCase();
  if (!HOST.test(domain)) throw new ConfigError('auth.domain', `must be the hosted UI's host name, not ${JSON.stringify(auth.domain)}`);
  let redirectUri = auth.redirectUri;
  if (redirectUri === undefined || redirectUri === '') {
    if (!origin) throw new ConfigError('auth.redirectUri', 'must be set');
    redirectUri = origin;
  }
  if (typeof redirectUri !== 'string' || !/^https?:\/\//.test(redirectUri)) {
    throw new ConfigError('auth.redirectUri', `must be an http(s) URL, not ${JSON.stringify(redirectUri)}`);
  }
  const rawApi = topApi !== undefined && topApi !== '' ? topApi : auth.api;
  const api = apiBase(rawApi, topApi !== undefined && topApi !== '' ? 'api' : 'auth.api', true);
  return {
    api,
    auth: { kind: 'cognito', region, userPoolId, userPoolClientId, identityPoolId, domain, redirectUri },
  };
}

/**
 * Checks the parsed config.json. `origin` (e.g. location.origin + location.pathname)
 * is the default Cognito redirect URI.
 */
export function parseConfig(raw, origin) {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError('(the document)', 'must be a JSON object');
  }
  const auth = raw.auth ?? { kind: 'none' };
  if (auth === null || typeof auth !== 'object' || Array.isArray(auth)) {
    throw new ConfigError('auth', 'must be an object with a "kind"');
  }
  switch (auth.kind) {
    case 'none':
      return { api: apiBase(raw.api, 'api', false), auth: { kind: 'none' } };
    case 'token':
      return { api: apiBase(raw.api, 'api', false), auth: { kind: 'token' } };
    case 'cognito':
      return cognito(auth, raw.api, origin);
    default:
      throw new ConfigError('auth.kind', `must be "none", "token" or "cognito", not ${JSON.stringify(auth.kind)}`);
  }
}

/** Fetches and parses `./config.json` (relative to the page). */
export async function loadConfig(fetchFn = fetch, origin = undefined) {
  const resp = await fetchFn('./config.json', { cache: 'no-store' });
  if (!resp.ok) throw new ConfigError('(the file)', `could not be read: HTTP ${resp.status}`);
  let raw;
  try {
    raw = await resp.json();
  } catch (e) {
    throw new ConfigError('(the document)', `is not JSON: ${e.message}`);
  }
  return parseConfig(raw, origin);
}
