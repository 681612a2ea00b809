// Events: the audit trail, newest first, filtered by device, reason and time range,
// in pages ("Load more" follows nextToken); for one device, a timeline.

import { useEffect, useState } from 'preact/hooks';

import { useConsole } from '../app.js';
import { href, setQuery } from '../router.js';
import { html, ErrorBox, Field, Json, Loading, Table, Time } from '../ui/common.js';

export const REASONS = [
  'DeviceCreated',
  'DeviceUpdated',
  'DeviceDeleted',
  'DeviceOnline',
  'DeviceOffline',
  'SchemaUpdated',
  'CommandSent',
  'CommandCompleted',
  'CommandFailed',
  'DesiredPropertiesUpdated',
  'ReportedPropertiesUpdated',
  'InvalidMessage',
  'CertificateIssued',
  'CertificatesChanged',
  'Custom',
];
export const EVENTS_POLL_MS = 5000;
const PAGE = 100;

/** The API query of the filters: since/until from datetime-local inputs or durations (`1h`). */
export function eventsQuery(query) {
  const time = (v) => {
    if (!v) return undefined;
    if (/^\d+[smhd]$/.test(v)) return v;
    const d = new Date(v);
    return Number.isNaN(d.getTime()) ? v : d.toISOString();
  };
  return { deviceId: query.deviceId, reason: query.reason, since: time(query.since), until: time(query.until), limit: PAGE };
}

function Timeline({ events }) {
  if (!events.length) return html`<div class="muted empty">No event.</div>`;
  return html`<ol class="timeline" data-testid="timeline">
    ${events.map(
      (e) => html`<li key=${e.id} class=${e.type === 'Warning' ? 'warning' : ''}>
        <div class="when"><${Time} value=${e.time} /></div>
        <div><strong>${e.reason}</strong> ${e.message}</div>
        ${e.actor ? html`<div class="muted">by ${e.actor}</div>` : null}
      </li>`,
    )}
  </ol>`;
}

export function EventsPage({ query, device }) {
  const { api } = useConsole();
  const q = eventsQuery(query);
  const key = JSON.stringify(q);
  const [first, setFirst] = useState(null);
  const [extra, setExtra] = useState({ events: [], next: undefined });
  const [error, setError] = useState(null);
  const [view, setView] = useState(device ? 'timeline' : 'table');

  // The first page is polled; pages loaded with "Load more" stay below it.
  useEffect(() => {
    let live = true;
    const load = async () => {
      try {
        const body = await api.get('/v1/events', q);
        if (!live) return;
        setFirst({ events: body.events ?? [], next: body.nextToken ?? null });
        setError(null);
      } catch (e) {
        if (live) setError(e);
      }
    };
    setFirst(null);
    setExtra({ events: [], next: undefined });
    load();
    const t = setInterval(load, EVENTS_POLL_MS);
    return () => {
      live = false;
      clearInterval(t);
    };
  }, [api, key]);

  const seen = new Set((first?.events ?? []).map((e) => e.id));
  const events = first ? [...first.events, ...extra.events.filter((e) => !seen.has(e.id))] : null;
  const next = extra.next === undefined ? first?.next : extra.next;
  const more = async () => {
    try {
      const body = await api.get('/v1/events', { ...q, nextToken: next });
      setExtra((old) => ({ events: [...old.events, ...(body.events ?? [])], next: body.nextToken ?? null }));
    } catch (e) {
      setError(e);
    }
  };
  const set = (k) => (e) => setQuery({ ...query, [k]: e.target.value });

  return html`<section data-testid="events">
    ${device ? null : html`<div class="page-head"><h1>Events</h1></div>`}
    <div class="filters">
      ${device ? null : html`<${Field} label="Device id"><input value=${query.deviceId ?? ''} onChange=${set('deviceId')} aria-label="device id" /><//>`}
      <${Field} label="Reason">
        <select value=${query.reason ?? ''} onChange=${set('reason')} aria-label="reason">
          <option value="">any</option>
          ${REASONS.map((r) => html`<option value=${r}>${r}</option>`)}
        </select>
      <//>
      <${Field} label="Since" hint="1h, 7d or a time"><input value=${query.since ?? ''} onChange=${set('since')} placeholder="1h" aria-label="since" /><//>
      <${Field} label="Until"><input type="datetime-local" value=${query.until ?? ''} onChange=${set('until')} aria-label="until" /><//>
      <div class="segmented" role="group" aria-label="view">
        <button class=${view === 'table' ? 'active' : 'secondary'} onClick=${() => setView('table')}>Table</button>
        <button class=${view === 'timeline' ? 'active' : 'secondary'} onClick=${() => setView('timeline')}>Timeline</button>
      </div>
    </div>
    <${ErrorBox} error=${error} />
    ${events === null
      ? html`<${Loading} what="events" />`
      : view === 'timeline'
        ? html`<${Timeline} events=${events} />`
        : html`<${Table}
            testid="events-table"
            rows=${events}
            rowKey=${(e) => e.id}
            empty="No event matches."
            columns=${[
              { label: 'Time', render: (e) => html`<${Time} value=${e.time} />` },
              { label: 'Reason', render: (e) => html`<span class=${e.type === 'Warning' ? 'warn-text' : ''}>${e.reason}</span>` },
              { label: 'Device', render: (e) => html`<a href=${href('devices', e.deviceId, 'events')}>${e.name || e.deviceId}${e.namespace ? `/${e.namespace}` : ''}</a>` },
              { label: 'Message', render: (e) => e.message },
              { label: 'Actor', render: (e) => e.actor ?? '' },
              { label: 'Payload', render: (e) => (e.payload === null || e.payload === undefined ? '' : html`<details><summary>JSON</summary><${Json} value=${e.payload} /></details>`) },
            ]}
          />`}
    ${next ? html`<button class="secondary" onClick=${more}>Load more</button>` : null}
  </section>`;
}
