// Hash routing (`#/devices/<id>/telemetry?name=…`), so that the server only serves files.

import { useEffect, useState } from 'preact/hooks';

/** `#/devices/weather/telemetry?name=x` -> {parts: ['devices', 'weather', 'telemetry'], query: {name: 'x'}}. */
export function parseHash(hash) {
  const raw = String(hash ?? '').replace(/^#/, '');
  const [path, search = ''] = raw.split('?');
  const parts = path
    .split('/')
    .filter(Boolean)
    .map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    });
  const query = Object.fromEntries(new URLSearchParams(search));
  return { parts, query };
}

/** The hash of a route: href('devices', id, 'telemetry', {name}) -> `#/devices/<id>/telemetry?name=…`. */
export function href(...args) {
  const query = args.length && typeof args[args.length - 1] === 'object' ? args.pop() : null;
  const path = args.map((a) => encodeURIComponent(String(a))).join('/');
  const q = query ? new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== '')).toString() : '';
  return `#/${path}${q ? `?${q}` : ''}`;
}

/** The current route; re-renders on hashchange. */
export function useRoute() {
  const [route, setRoute] = useState(() => parseHash(window.location.hash));
  useEffect(() => {
    const on = () => setRoute(parseHash(window.location.hash));
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}

/** Replaces the query of the current route (filters), without a new history entry. */
export function setQuery(query) {
  const { parts } = parseHash(window.location.hash);
  const next = href(...parts, query);
  if (next !== window.location.hash) {
    window.history.replaceState(null, '', next);
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  }
}
