// Telemetry of one device: per telemetry message, a uPlot chart of its numeric fields
// over 15 min, 1 h, 24 h, 7 d or a custom range, refreshed every few seconds, and the
// table of its most recent values. A message's page is
// `#/devices/<id>/telemetry/<message>` (the link `mir tlm list` prints).

import { useMemo } from 'preact/hooks';

import { useConsole } from '../app.js';
import { href, setQuery } from '../router.js';
import { TimeChart, numericColumns } from '../ui/chart.js';
import { html, useData, ErrorBox, Field, Loading, Table, Time } from '../ui/common.js';

export const RANGES = [
  ['15m', '15 min'],
  ['1h', '1 h'],
  ['24h', '24 h'],
  ['7d', '7 d'],
  ['custom', 'Custom'],
];
export const TELEMETRY_POLL_MS = 5000;
/** Most rows a chart loads (the newest ones of the range). */
export const MAX_ROWS = 20_000;
const RECENT_ROWS = 50;

/** The `since`/`until` query of a range; a custom range from its datetime-local inputs. */
export function rangeQuery(range, since, until) {
  if (range !== 'custom') return { since: RANGES.some(([r]) => r === range) ? range : '15m' };
  const iso = (v) => (v ? new Date(v).toISOString() : undefined);
  return { since: iso(since) ?? '1h', until: iso(until) };
}

/**
 * The newest `max` rows of one message in a window, oldest first: each page holds the
 * newest rows before the previous page, so pages go in front.
 */
export async function fetchRows(api, id, name, span, max = MAX_ROWS) {
  let rows = [];
  let token;
  for (let i = 0; i < 100; i++) {
    const page = await api.get('/v1/telemetry/query', { ids: id, name, ...span, limit: Math.min(5000, max - rows.length), nextToken: token });
    rows = [...(page.rows ?? []), ...rows];
    token = page.nextToken;
    if (!token || rows.length >= max) break;
  }
  return rows;
}

function valueText(v) {
  if (v === undefined || v === null) return '—';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

export function TelemetryPage({ id, message, query }) {
  const { api } = useConsole();
  const list = useData(() => api.get('/v1/telemetry', { ids: id }), [api, id]);
  const device = list.data?.devices?.[0];
  const messages = device?.messages ?? [];
  const name = message ?? query.name ?? messages[0]?.measure;
  const range = query.range ?? '15m';
  const auto = query.auto !== 'off';
  const span = rangeQuery(range, query.since, query.until);
  const rowsData = useData(
    () => (name ? fetchRows(api, id, name, span) : Promise.resolve([])),
    [api, id, name, span.since, span.until],
    auto && range !== 'custom' ? TELEMETRY_POLL_MS : 0,
  );
  const rows = rowsData.data ?? [];
  const columns = useMemo(() => {
    const cols = [];
    for (const r of rows) for (const k of Object.keys(r.values ?? {})) if (!cols.includes(k)) cols.push(k);
    return cols;
  }, [rows]);
  const numeric = useMemo(() => numericColumns(columns, rows), [columns, rows]);
  const recent = rows.slice(-RECENT_ROWS).reverse();
  const set = (patch) => setQuery({ ...query, ...patch });

  if (!device) return list.error ? html`<${ErrorBox} error=${list.error} />` : html`<${Loading} what="telemetry" />`;
  return html`<div data-testid="telemetry">
    ${device.error ? html`<div class="note">${device.error}</div>` : null}
    <nav class="tabs sub">
      ${messages.map(
        (m) => html`<a href=${href('devices', id, 'telemetry', m.measure, { ...query, name: undefined })} class=${m.measure === name ? 'active' : ''}>${m.measure} <span class="muted">(${m.count})</span></a>`,
      )}
    </nav>
    ${!name
      ? html`<div class="muted">This device declares no telemetry message.</div>`
      : html`<div class="filters">
            <div class="segmented" role="group" aria-label="time range">
              ${RANGES.map(([r, label]) => html`<button class=${r === range ? 'active' : 'secondary'} onClick=${() => set({ range: r })}>${label}</button>`)}
            </div>
            ${range === 'custom'
              ? html`<${Field} label="From"><input type="datetime-local" value=${query.since ?? ''} onChange=${(e) => set({ since: e.target.value })} /><//>
                  <${Field} label="To"><input type="datetime-local" value=${query.until ?? ''} onChange=${(e) => set({ until: e.target.value })} /><//>`
              : html`<label class="check"><input type="checkbox" checked=${auto} onChange=${(e) => set({ auto: e.target.checked ? undefined : 'off' })} /> Auto-refresh</label>`}
            <span class="muted" data-testid="row-count">${rowsData.loading && !rowsData.data ? 'loading…' : `${rows.length} readings`}</span>
          </div>
          <${ErrorBox} error=${rowsData.error} />
          ${numeric.length && rows.length
            ? html`<${TimeChart} rows=${rows} fields=${numeric} />`
            : html`<div class="muted empty">${rowsData.data ? 'No numeric reading in this range.' : ''}</div>`}
          <h2>Recent values</h2>
          <${Table}
            testid="recent"
            rows=${recent}
            empty="No reading in this range."
            columns=${[{ label: 'Time', render: (r) => html`<${Time} value=${r.time} />` }, ...columns.map((c) => ({ label: c, render: (r) => valueText(r.values?.[c]) }))]}
          />`}
  </div>`;
}
