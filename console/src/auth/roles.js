// Who may do what: the operator jobs of the API (infra/cdk/lib/operator-access.ts), from
// the user-pool groups in the id token's `cognito:groups` claim.
//   readOnly     every GET route
//   operator     + POST /v1/commands, POST /v1/config, POST /v1/devices/{id}/schema/refresh
//   provisioner  + creating, editing, deleting devices and issuing certificates
//   admin        every route
// The console hides what the role may not do; the API refuses it anyway.

export const ROLES = ['readOnly', 'operator', 'provisioner', 'admin'];

/** The known roles among the groups (unknown group names are ignored). */
export function rolesFromGroups(groups) {
  if (!Array.isArray(groups)) return [];
  return ROLES.filter((r) => groups.includes(r));
}

/** The job a changing (non-GET) route belongs to, besides admin; null when none. */
export function jobOfChangingRoute(path) {
  const p = path.split('?')[0];
  if (p === '/v1/commands' || p.startsWith('/v1/commands/')) return 'operator';
  if (p === '/v1/config' || p.startsWith('/v1/config/')) return 'operator';
  if (/^\/v1\/devices\/[^/]+\/schema\/refresh$/.test(p)) return 'operator';
  if (p === '/v1/devices' || p.startsWith('/v1/devices/')) return 'provisioner';
  return null;
}

/** True when one of `roles` may call `method path`. */
export function can(roles, method, path) {
  if (!Array.isArray(roles) || roles.length === 0) return false;
  if (roles.includes('admin')) return true;
  const m = method.toUpperCase();
  if (m === 'GET' || m === 'HEAD') return roles.some((r) => ROLES.includes(r));
  const job = jobOfChangingRoute(path);
  return job !== null && roles.includes(job);
}

/** The roles named in a shown form: "admin", "operator + provisioner", "no role". */
export function describeRoles(roles) {
  return roles.length === 0 ? 'no role' : roles.join(' + ');
}

/** The claims of a JWT (not verified: the API verifies; this only reads the groups). */
export function jwtClaims(token) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3) throw new Error('the id token is not a JWT');
  const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
  const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
  const bin = atob(padded);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** The roles of a signed-in Cognito user, from the id token. */
export function rolesFromIdToken(idToken) {
  const groups = jwtClaims(idToken)['cognito:groups'];
  return rolesFromGroups(groups);
}
