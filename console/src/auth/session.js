// One interface over the three ways to reach the API (config.json's auth.kind):
//   none     mir local on loopback: plain fetch, role admin;
//   token    a hub with access.apiToken: `Authorization: Bearer <token>`, asked once and
//            kept in sessionStorage (forgotten when the hub refuses it), role admin;
//   cognito  AWS: hosted UI sign-in, SigV4-signed calls, roles from cognito:groups.

import { CognitoAuth } from './cognito.js';
import { rolesFromIdToken } from './roles.js';

export const TOKEN_KEY = 'mir.console.apiToken';

export class Session {
  /** `storage`: sessionStorage in the browser, any Storage-like object in tests. */
  constructor(config, storage = globalThis.sessionStorage) {
    this.config = config;
    this.kind = config.auth.kind;
    this.storage = storage;
    this.cognito = this.kind === 'cognito' ? new CognitoAuth(config.auth, storage) : null;
    this.listeners = new Set();
  }

  /** Finishes a Cognito redirect, if this page load is one. */
  async init() {
    if (this.cognito) await this.cognito.completeSignIn();
  }

  get token() {
    return this.storage?.getItem(TOKEN_KEY) ?? null;
  }

  /** True when API calls can be made (a token given, a Cognito user signed in). */
  get signedIn() {
    if (this.kind === 'token') return Boolean(this.token);
    if (this.kind === 'cognito') return this.cognito.signedIn;
    return true;
  }

  /** The operator roles: admin locally, the id token's groups on AWS. */
  get roles() {
    if (this.kind !== 'cognito') return ['admin'];
    if (!this.cognito.signedIn) return [];
    try {
      return rolesFromIdToken(this.cognito.tokens.idToken);
    } catch {
      return [];
    }
  }

  /** Who is signed in, for the header. */
  get user() {
    if (this.kind === 'cognito' && this.cognito.signedIn) {
      try {
        const [, payload] = this.cognito.tokens.idToken.split('.');
        const c = JSON.parse(atob(payload.replace(/-/g, '+').replace(/_/g, '/')));
        return c.email || c['cognito:username'] || c.sub || 'signed in';
      } catch {
        return 'signed in';
      }
    }
    return this.kind === 'token' ? 'token' : 'local';
  }

  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  changed() {
    for (const fn of this.listeners) fn();
  }

  setToken(token) {
    const t = token.trim();
    if (t.length === 0) throw new Error('token: enter the hub\'s access.apiToken');
    this.storage.setItem(TOKEN_KEY, t);
    this.changed();
  }

  async signIn() {
    if (this.cognito) await this.cognito.signIn();
  }

  signOut() {
    if (this.kind === 'token') {
      this.storage.removeItem(TOKEN_KEY);
      this.changed();
    } else if (this.cognito) {
      this.cognito.signOut();
    }
  }

  /** fetch with this session's authorization. A refused token is forgotten. */
  async fetch(url, init = {}) {
    if (this.kind === 'cognito') return this.cognito.fetch(url, init);
    const headers = new Headers(init.headers ?? {});
    if (this.kind === 'token' && this.token) headers.set('Authorization', `Bearer ${this.token}`);
    const resp = await fetch(url, { ...init, headers });
    if (resp.status === 401 && this.kind === 'token') {
      this.storage.removeItem(TOKEN_KEY);
      this.changed();
    }
    return resp;
  }
}
