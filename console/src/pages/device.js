// Device: the twin (meta and spec editable as in `mir dev edit`, sent as a merge patch),
// desired and reported properties side by side with their times, and the tabs of the
// device's schema, telemetry, commands, configuration and events.

import { useState } from 'preact/hooks';

import { useConsole } from '../app.js';
import { href } from '../router.js';
import { displayName, editableDoc, presence, twinEdit } from '../twin.js';
import { html, useData, ErrorBox, Json, Labels, Loading, PresenceBadge, Table, Tabs, Time } from '../ui/common.js';
import { SchemaExplorer } from './schema.js';
import { TelemetryPage } from './telemetry.js';
import { SendPage } from './send.js';
import { EventsPage } from './events.js';

export const DEVICE_POLL_MS = 3000;

/** Desired and reported properties of a twin, one row per message name. */
export function propertyRows(twin) {
  const desired = twin.properties?.desired ?? {};
  const reported = twin.properties?.reported ?? {};
  const times = twin.status?.properties ?? {};
  const names = [...new Set([...Object.keys(desired), ...Object.keys(reported)])].sort();
  return names.map((name) => ({
    name,
    desired: desired[name],
    desiredAt: times.desired?.[name],
    reported: reported[name],
    reportedAt: times.reported?.[name],
  }));
}

export function PropertiesTable({ twin }) {
  return html`<${Table}
    testid="properties"
    rows=${propertyRows(twin)}
    rowKey=${(r) => r.name}
    empty="No desired or reported property yet."
    columns=${[
      { label: 'Message', render: (r) => html`<code>${r.name}</code>` },
      { label: 'Desired', render: (r) => html`<${Json} value=${r.desired} compact />` },
      { label: 'Desired at', render: (r) => html`<${Time} value=${r.desiredAt} />` },
      { label: 'Reported', render: (r) => html`<${Json} value=${r.reported} compact />` },
      { label: 'Reported at', render: (r) => html`<${Time} value=${r.reportedAt} />` },
    ]}
  />`;
}

function TwinEditor({ twin, onSaved }) {
  const { api } = useConsole();
  const [text, setText] = useState(() => JSON.stringify(editableDoc(twin), null, 2));
  const [notes, setNotes] = useState([]);
  const [error, setError] = useState(null);
  const save = async () => {
    const { patch, ignored, errors } = twinEdit(twin, text);
    setNotes(ignored.length ? [`${ignored.join(', ')} cannot be edited (only meta, spec.disabled and properties.desired are); those changes are ignored`] : []);
    if (errors.length) return setError(errors);
    if (!patch) return setError(['nothing changed']);
    try {
      const updated = await api.patch(`/v1/devices/${encodeURIComponent(twin.spec.deviceId)}`, patch);
      setError(null);
      setText(JSON.stringify(editableDoc(updated), null, 2));
      onSaved(updated);
    } catch (e) {
      setError(e);
    }
  };
  return html`<div class="card">
    <h2>Edit the twin</h2>
    <p class="muted">meta, spec.disabled and properties.desired; saved as a JSON merge patch.</p>
    <textarea class="code" rows="16" aria-label="twin" value=${text} onInput=${(e) => setText(e.target.value)}></textarea>
    <div class="actions">
      <button onClick=${save}>Save</button>
      <button class="secondary" onClick=${() => setText(JSON.stringify(editableDoc(twin), null, 2))}>Reset</button>
    </div>
    ${notes.map((n) => html`<div class="note">${n}</div>`)}
    <${ErrorBox} error=${error} />
  </div>`;
}

function Overview({ twin, reload }) {
  const { api, can } = useConsole();
  const [msg, setMsg] = useState(null);
  const [error, setError] = useState(null);
  const id = twin.spec.deviceId;
  const path = `/v1/devices/${encodeURIComponent(id)}`;
  const refresh = async () => {
    try {
      await api.post(`${path}/schema/refresh`, {});
      setMsg('asked the device to send its schema again');
    } catch (e) {
      setError(e);
    }
  };
  const remove = async () => {
    if (!window.confirm(`Delete ${displayName(twin)}? Its certificates are revoked.`)) return;
    try {
      await api.delete(path);
      window.location.hash = '#/devices';
    } catch (e) {
      setError(e);
    }
  };
  const s = twin.status ?? {};
  return html`<div class="grid">
    <div class="card">
      <h2>Twin</h2>
      <dl class="facts">
        <dt>Device id</dt><dd><code>${id}</code></dd>
        <dt>Name</dt><dd>${twin.meta.name}</dd>
        <dt>Namespace</dt><dd>${twin.meta.namespace}</dd>
        <dt>Labels</dt><dd><${Labels} labels=${twin.meta.labels} /></dd>
        <dt>Annotations</dt><dd><${Labels} labels=${twin.meta.annotations} /></dd>
        <dt>State</dt><dd><${PresenceBadge} state=${presence(twin)} /></dd>
        <dt>Last heartbeat</dt><dd><${Time} value=${s.lastHeartbeat} /></dd>
        <dt>Schema</dt><dd>${(s.schema?.packageNames ?? []).join(', ') || html`<span class="muted">none yet</span>`}</dd>
        <dt>Schema fetched</dt><dd><${Time} value=${s.schema?.lastSchemaFetch} /></dd>
      </dl>
      <div class="actions">
        ${can('POST', `${path}/schema/refresh`) ? html`<button class="secondary" onClick=${refresh}>Refresh schema</button>` : null}
        ${can('DELETE', path) ? html`<button class="danger" onClick=${remove}>Delete device</button>` : null}
      </div>
      ${msg ? html`<div class="note">${msg}</div>` : null}
      <${ErrorBox} error=${error} />
    </div>
    ${can('PATCH', path) ? html`<${TwinEditor} key=${id} twin=${twin} onSaved=${reload} />` : null}
    <div class="card wide">
      <h2>Properties</h2>
      <${PropertiesTable} twin=${twin} />
    </div>
  </div>`;
}

export function DevicePage({ id, tab, item, query }) {
  const { api } = useConsole();
  const { data: twin, error, reload } = useData(() => api.get(`/v1/devices/${encodeURIComponent(id)}`), [api, id], DEVICE_POLL_MS);
  const tabs = [
    ['overview', 'Overview'],
    ['telemetry', 'Telemetry'],
    ['commands', 'Commands'],
    ['config', 'Configuration'],
    ['schema', 'Schema'],
    ['events', 'Events'],
  ].map(([t, label]) => ({ href: t === 'overview' ? href('devices', id) : href('devices', id, t), label }));
  const active = tab === 'overview' ? href('devices', id) : href('devices', id, tab);
  if (!twin) {
    return html`<section><h1>${id}</h1>${error ? html`<${ErrorBox} error=${error} />` : html`<${Loading} what="the twin" />`}</section>`;
  }
  let body;
  switch (tab) {
    case 'telemetry':
      body = html`<${TelemetryPage} id=${id} message=${item} query=${query} />`;
      break;
    case 'commands':
      body = html`<${SendPage} kind="command" query=${{ ...query, ids: id }} device=${twin} />`;
      break;
    case 'config':
      body = html`<${SendPage} kind="config" query=${{ ...query, ids: id }} device=${twin} />`;
      break;
    case 'schema':
      body = html`<${SchemaExplorer} id=${id} />`;
      break;
    case 'events':
      body = html`<${EventsPage} query=${{ ...query, deviceId: id }} device=${id} />`;
      break;
    default:
      body = html`<${Overview} twin=${twin} reload=${reload} />`;
  }
  return html`<section>
    <div class="page-head">
      <h1>${displayName(twin)}</h1>
      <${PresenceBadge} state=${presence(twin)} />
      <span class="muted">last heartbeat <${Time} value=${twin.status?.lastHeartbeat} /></span>
    </div>
    <${ErrorBox} error=${error} />
    <${Tabs} tabs=${tabs} active=${active} />
    ${body}
  </section>`;
}
