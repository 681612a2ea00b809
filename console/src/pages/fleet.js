// Fleet: every device with its presence, last heartbeat and labels; filters by
// namespace and label selector (sent to the API) and free text (here); polled every few
// seconds so devices coming and going show up; client-side pages for large fleets;
// a selection to send commands or configuration to, and creating a device.

import { useEffect, useMemo, useState } from 'preact/hooks';

import { useConsole } from '../app.js';
import { parseLabels } from '../api.js';
import { href, setQuery } from '../router.js';
import { matchesText, presence } from '../twin.js';
import { html, useData, usePages, ErrorBox, Field, Labels, Loading, PresenceBadge, Table, Time } from '../ui/common.js';

export const FLEET_POLL_MS = 4000;
const PAGE_SIZE = 100;

function CreateDevice({ onCreated }) {
  const { api } = useConsole();
  const [error, setError] = useState(null);
  const [open, setOpen] = useState(false);
  if (!open) return html`<button onClick=${() => setOpen(true)}>New device</button>`;
  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const id = String(f.get('id') ?? '').trim();
    try {
      if (!/^[a-zA-Z0-9:_-]{1,128}$/.test(id)) throw new Error('device id: must be 1 to 128 of a-z A-Z 0-9 : _ -');
      const labels = parseLabels(f.get('labels'));
      const name = String(f.get('name') ?? '').trim() || id;
      const namespace = String(f.get('namespace') ?? '').trim() || 'default';
      await api.post('/v1/devices', { meta: { name, namespace, labels }, spec: { deviceId: id } });
      setOpen(false);
      onCreated(id);
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="card inline-form" onSubmit=${submit}>
    <${Field} label="Device id"><input name="id" required /><//>
    <${Field} label="Name"><input name="name" placeholder="(the id)" /><//>
    <${Field} label="Namespace"><input name="namespace" placeholder="default" /><//>
    <${Field} label="Labels"><input name="labels" placeholder="site=roof,floor=2" /><//>
    <button type="submit">Create</button>
    <button type="button" class="secondary" onClick=${() => setOpen(false)}>Cancel</button>
    <${ErrorBox} error=${error} />
  </form>`;
}

export function FleetPage({ query }) {
  const { api, can } = useConsole();
  const namespace = query.namespace ?? '';
  const labels = query.labels ?? '';
  const text = query.q ?? '';
  const [selected, setSelected] = useState(() => new Set());
  let labelError = null;
  let labelQuery = '';
  try {
    parseLabels(labels);
    labelQuery = labels;
  } catch (e) {
    labelError = e;
  }
  const { data, error } = useData(
    async () => {
      const all = await api.all('/v1/devices', 'devices', { namespaces: namespace, labels: labelQuery, limit: 1000 });
      performance.mark('mir:fleet-data', { detail: { devices: all.length } });
      return all;
    },
    [api, namespace, labelQuery],
    FLEET_POLL_MS,
  );
  const devices = useMemo(() => (data ?? []).filter((t) => matchesText(t, text)), [data, text]);
  const { shown, controls, reset } = usePages(devices, PAGE_SIZE);
  useEffect(() => {
    if (data) performance.mark('mir:fleet-rendered', { detail: { devices: data.length } });
  }, [data]);

  const filter = (key) => (e) => {
    reset();
    setQuery({ ...query, [key]: e.target.value });
  };
  const toggle = (id) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setSelected(next);
  };
  const allShown = shown.length > 0 && shown.every((t) => selected.has(t.spec.deviceId));
  const toggleShown = () => {
    const next = new Set(selected);
    for (const t of shown) allShown ? next.delete(t.spec.deviceId) : next.add(t.spec.deviceId);
    setSelected(next);
  };
  const ids = [...selected].join(',');
  const online = (data ?? []).filter((t) => t.status?.online).length;

  const columns = [
    {
      label: html`<input type="checkbox" aria-label="select the devices of this page" checked=${allShown} onChange=${toggleShown} />`,
      className: 'narrow',
      render: (t) => html`<input type="checkbox" aria-label=${`select ${t.spec.deviceId}`} checked=${selected.has(t.spec.deviceId)} onChange=${() => toggle(t.spec.deviceId)} />`,
    },
    { label: 'Name', render: (t) => html`<a href=${href('devices', t.spec.deviceId)}>${t.meta.name}</a>` },
    { label: 'Namespace', render: (t) => t.meta.namespace },
    { label: 'Device id', render: (t) => html`<code>${t.spec.deviceId}</code>` },
    { label: 'State', render: (t) => html`<${PresenceBadge} state=${presence(t)} />` },
    { label: 'Last heartbeat', render: (t) => html`<${Time} value=${t.status?.lastHeartbeat} />` },
    { label: 'Labels', render: (t) => html`<${Labels} labels=${t.meta.labels} />` },
  ];

  return html`<section>
    <div class="page-head">
      <h1>Fleet</h1>
      <span class="muted" data-testid="fleet-summary">${data ? `${data.length} devices, ${online} online` : ''}</span>
      <span class="spacer"></span>
      ${can('POST', '/v1/devices') ? html`<${CreateDevice} onCreated=${(id) => (window.location.hash = href('devices', id))} />` : null}
    </div>
    <div class="filters">
      <${Field} label="Namespace"><input value=${namespace} onChange=${filter('namespace')} placeholder="all" aria-label="namespace" /><//>
      <${Field} label="Labels"><input value=${labels} onChange=${filter('labels')} placeholder="site=roof,floor=2" aria-label="label selector" /><//>
      <${Field} label="Search"><input value=${text} onInput=${filter('q')} placeholder="name, id, label" aria-label="search" /><//>
    </div>
    <${ErrorBox} error=${labelError ?? error} />
    ${selected.size
      ? html`<div class="selection">
          ${selected.size} selected:
          ${can('POST', '/v1/commands') ? html`<a class="button" href=${href('commands', { ids })}>Send a command</a>` : null}
          ${can('POST', '/v1/config') ? html`<a class="button" href=${href('config', { ids })}>Send configuration</a>` : null}
          <button class="secondary" onClick=${() => setSelected(new Set())}>Clear</button>
        </div>`
      : labelQuery && can('POST', '/v1/commands')
        ? html`<div class="selection">
            Label selector <code>${labelQuery}</code>:
            <a class="button" href=${href('commands', { labels: labelQuery })}>Send a command</a>
            ${can('POST', '/v1/config') ? html`<a class="button" href=${href('config', { labels: labelQuery })}>Send configuration</a>` : null}
          </div>`
        : null}
    ${data === undefined && !error
      ? html`<${Loading} what="devices" />`
      : html`<${Table} testid="fleet" columns=${columns} rows=${shown} rowKey=${(t) => t.spec.deviceId} empty="No device matches." />
          ${devices.length > PAGE_SIZE ? controls : null}`}
  </section>`;
}
