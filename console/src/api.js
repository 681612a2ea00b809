// The one client of the HTTP API every page uses: JSON in and out, the session's
// authorization, the API's own error text, and paging over `nextToken`.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

/** `{a: 1, b: undefined, c: ['x', 'y']}` -> `a=1&c=x%2Cy` (empty values left out). */
export function queryString(query = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) {
      if (v.length) q.set(k, v.join(','));
    } else {
      q.set(k, String(v));
    }
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

export class Api {
  constructor(base, session) {
    this.base = base;
    this.session = session;
  }

  async request(method, path, { query, body } = {}) {
    const init = { method, headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await this.session.fetch(`${this.base}${path}${queryString(query)}`, init);
    } catch (e) {
      throw new ApiError(0, `${method} ${path}: the API does not answer (${e.message})`);
    }
    const text = await resp.text();
    let json = null;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        json = null;
      }
    }
    if (!resp.ok) {
      const why = json?.error ?? json?.message ?? (text || resp.statusText);
      throw new ApiError(resp.status, `${method} ${path}: ${resp.status} ${why}`);
    }
    return json;
  }

  get(path, query) {
    return this.request('GET', path, { query });
  }
  post(path, body) {
    return this.request('POST', path, { body });
  }
  put(path, body) {
    return this.request('PUT', path, { body });
  }
  patch(path, body) {
    return this.request('PATCH', path, { body });
  }
  delete(path) {
    return this.request('DELETE', path);
  }

  /**
   * Every item of a paged list (`{<key>: [...], nextToken?}`), following `nextToken`
   * until the last page or `max` items.
   */
  async all(path, key, query = {}, max = Infinity) {
    const out = [];
    let token;
    for (let page = 0; page < 10_000; page++) {
      const body = await this.get(path, { ...query, nextToken: token });
      out.push(...(body?.[key] ?? []));
      token = body?.nextToken;
      if (!token || out.length >= max) break;
    }
    return out.length > max ? out.slice(0, max) : out;
  }
}

/** Mir's name of a command status: SUCCESS -> COMMAND_RESPONSE_STATUS_SUCCESS. */
export function commandStatusName(status) {
  const s = String(status ?? '');
  return s.startsWith('COMMAND_RESPONSE_STATUS_') ? s : `COMMAND_RESPONSE_STATUS_${s}`;
}

/** `k=v, k2=v2` -> {k: 'v', k2: 'v2'}; an error names the pair that is not key=value. */
export function parseLabels(spec) {
  const labels = {};
  for (const pair of String(spec ?? '').split(',').map((p) => p.trim()).filter(Boolean)) {
    const i = pair.indexOf('=');
    if (i <= 0) throw new Error(`label selector: "${pair}" must be key=value`);
    labels[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
  }
  return labels;
}

/** {k: 'v'} -> 'k=v,…' (the API's `labels` query form). */
export function labelsQuery(labels) {
  return Object.entries(labels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}
