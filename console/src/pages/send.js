// Commands and configuration: the messages the targeted devices accept (catalog), a form
// generated from the schema for the chosen one (the JSON template, or the desired value,
// as its start), and the send. A command shows each device's result and decoded
// response; configuration shows the desired value stored, then what the device reports
// back. Targets: one device, a selection (ids), a namespace or a label selector.

import { useMemo, useRef, useState } from 'preact/hooks';

import { useConsole } from '../app.js';
import { commandStatusName, labelsQuery, parseLabels } from '../api.js';
import { href, setQuery } from '../router.js';
import { SchemaForm } from '../forms/form.js';
import { buildPayload, formatErrors, initialState, parsePayloadText } from '../forms/model.js';
import { fetchSchema } from './schema.js';
import { html, useData, ErrorBox, Field, Json, Loading, StatusBadge, Table, Time } from '../ui/common.js';

const KINDS = {
  command: { title: 'Commands', path: '/v1/commands', noun: 'command', verb: 'Send command' },
  config: { title: 'Configuration', path: '/v1/config', noun: 'configuration message', verb: 'Send configuration' },
};
/** How long configuration results are followed for the reported value, and how often. */
export const FOLLOW_MS = 60_000;
export const FOLLOW_EVERY_MS = 1000;

/** The targets of a route query: ids, names (`a/ns`), namespaces, labels (`k=v,…`). */
export function targetsOf(query) {
  const list = (v) => String(v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const names = list(query.names).map((n) => {
    const [name, namespace] = n.split('/');
    return namespace ? { name, namespace } : { name };
  });
  return { ids: list(query.ids), names, namespaces: list(query.namespaces), labels: parseLabels(query.labels) };
}

export function hasTargets(t) {
  return t.ids.length + t.names.length + t.namespaces.length + Object.keys(t.labels).length > 0;
}

/** The targets as the API's list query. */
export function targetsQuery(t) {
  return {
    ids: t.ids,
    names: t.names.map((n) => (n.namespace ? `${n.name}/${n.namespace}` : n.name)),
    namespaces: t.namespaces,
    labels: labelsQuery(t.labels),
  };
}

function TargetPicker({ query, kind }) {
  const apply = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    setQuery({ ids: f.get('ids'), namespaces: f.get('namespaces'), labels: f.get('labels') });
  };
  return html`<form class="card inline-form" onSubmit=${apply}>
    <${Field} label="Device ids"><input name="ids" value=${query.ids ?? ''} placeholder="weather,power" /><//>
    <${Field} label="Namespaces"><input name="namespaces" value=${query.namespaces ?? ''} placeholder="default" /><//>
    <${Field} label="Label selector"><input name="labels" value=${query.labels ?? ''} placeholder="site=roof" /><//>
    <button type="submit">Choose the devices</button>
    <span class="muted">or select devices in the <a href="#/devices">fleet</a>, then “${KINDS[kind].verb}”.</span>
  </form>`;
}

/** The message names of a catalog, each with the devices that accept it. */
export function catalogMessages(catalog) {
  const out = new Map();
  for (const d of catalog?.devices ?? []) {
    for (const m of d.messages ?? []) {
      if (!out.has(m.name)) out.set(m.name, { name: m.name, template: m.template, devices: [] });
      out.get(m.name).devices.push({ deviceId: d.deviceId, desired: m.desired });
    }
  }
  return [...out.values()];
}

function CommandResults({ results }) {
  return html`<${Table}
    testid="results"
    rows=${results}
    rowKey=${(r) => r.deviceId}
    columns=${[
      { label: 'Device', render: (r) => html`<a href=${href('devices', r.deviceId)}>${r.name}/${r.namespace}</a>` },
      { label: 'Status', render: (r) => html`<${StatusBadge} status=${r.status} label=${commandStatusName(r.status)} />` },
      { label: 'Response', render: (r) => (r.response !== undefined ? html`<div class="muted">${r.responseName ?? ''}</div><${Json} value=${r.response} compact />` : html`<span class="muted">—</span>`) },
      { label: 'Error', render: (r) => r.error ?? '' },
    ]}
  />`;
}

/** After a configuration send: each device's desired value, then its reported properties since. */
function ConfigFollow({ results, name, sentAt }) {
  const { api } = useConsole();
  const ids = results.filter((r) => r.status === 'SENT' || r.status === 'STORED').map((r) => r.deviceId);
  const startedAt = useRef(Date.now());
  const following = Date.now() - startedAt.current < FOLLOW_MS;
  const { data } = useData(() => (ids.length ? api.all('/v1/devices', 'devices', { ids }) : Promise.resolve([])), [api, ids.join(',')], following ? FOLLOW_EVERY_MS : 0);
  const byId = new Map((data ?? []).map((t) => [t.spec.deviceId, t]));
  const rows = results.map((r) => {
    const twin = byId.get(r.deviceId);
    const times = twin?.status?.properties ?? {};
    const reported = Object.entries(twin?.properties?.reported ?? {})
      .filter(([n]) => times.reported?.[n] && Date.parse(times.reported[n]) >= sentAt - 1000)
      .map(([n, v]) => ({ name: n, value: v, at: times.reported[n] }));
    return { ...r, twin, desiredAt: times.desired?.[name], desiredNow: twin?.properties?.desired?.[name], reported };
  });
  return html`<${Table}
    testid="results"
    rows=${rows}
    rowKey=${(r) => r.deviceId}
    columns=${[
      { label: 'Device', render: (r) => html`<a href=${href('devices', r.deviceId)}>${r.name}/${r.namespace}</a>` },
      { label: 'Status', render: (r) => html`<${StatusBadge} status=${r.status} />` },
      { label: 'Desired', render: (r) => html`<${Json} value=${r.desiredNow ?? r.desired} compact /><div class="muted"><${Time} value=${r.desiredAt} /></div>` },
      {
        label: 'Reported since',
        render: (r) =>
          r.status === 'ERROR' || r.status === 'VALIDATED'
            ? html`<span class="muted">—</span>`
            : r.reported.length
              ? r.reported.map((p) => html`<div class="reported" data-testid="reported"><code>${p.name}</code> <${Json} value=${p.value} compact /> <span class="muted"><${Time} value=${p.at} /></span></div>`)
              : html`<span class="muted">${following ? 'waiting for the device to report…' : 'nothing reported yet'}</span>`,
      },
      { label: 'Error', render: (r) => r.error ?? '' },
    ]}
  />`;
}

function Composer({ kind, message, schema, targets, single }) {
  const { api } = useConsole();
  const start = () => {
    const seed = kind === 'config' && single ? (message.devices[0]?.desired ?? message.template) : message.template;
    return schema ? initialState(schema, message.name, seed) : null;
  };
  const [state, setState] = useState(start);
  const [mode, setMode] = useState(schema ? 'form' : 'json');
  const [text, setText] = useState(() => JSON.stringify(kind === 'config' && single ? (message.devices[0]?.desired ?? message.template) : message.template, null, 2));
  const [errors, setErrors] = useState([]);
  const [error, setError] = useState(null);
  const [sending, setSending] = useState(false);
  const [outcome, setOutcome] = useState(null);

  const payload = () => {
    if (mode === 'form') return buildPayload(schema, message.name, state);
    return parsePayloadText(text);
  };
  const switchMode = (next) => {
    if (next === mode) return;
    if (next === 'json') {
      const { value } = buildPayload(schema, message.name, state);
      setText(JSON.stringify(value, null, 2));
    } else {
      const { value, errors: errs } = parsePayloadText(text);
      if (errs.length) return setErrors(errs);
      setState(initialState(schema, message.name, value));
    }
    setErrors([]);
    setMode(next);
  };
  const send = async (dryRun) => {
    const { value, errors: errs } = payload();
    setErrors(errs);
    setError(null);
    if (errs.length) return;
    setSending(true);
    const sentAt = Date.now();
    try {
      const body = await api.post(KINDS[kind].path, { targets, name: message.name, payload: value, dryRun });
      setOutcome({ results: body.results ?? [], sentAt, dryRun });
    } catch (e) {
      setError(e);
    } finally {
      setSending(false);
    }
  };
  return html`<div class="card composer" data-testid="composer">
    <div class="page-head">
      <h2><code>${message.name}</code></h2>
      <span class="spacer"></span>
      ${schema
        ? html`<div class="segmented" role="group" aria-label="editor">
            <button class=${mode === 'form' ? 'active' : 'secondary'} onClick=${() => switchMode('form')}>Form</button>
            <button class=${mode === 'json' ? 'active' : 'secondary'} onClick=${() => switchMode('json')}>JSON</button>
          </div>`
        : html`<span class="muted">no schema: JSON only</span>`}
    </div>
    ${mode === 'form'
      ? html`<${SchemaForm} schema=${schema} name=${message.name} state=${state} onChange=${setState} errors=${errors} />`
      : html`<textarea class="code" rows="10" aria-label="payload" value=${text} onInput=${(e) => setText(e.target.value)}></textarea>`}
    ${errors.length ? html`<div class="error" role="alert" data-testid="form-errors">${formatErrors(errors).map((l) => html`<div>${l}</div>`)}</div>` : null}
    <div class="actions">
      <button disabled=${sending} onClick=${() => send(false)}>${sending ? 'Sending…' : KINDS[kind].verb}</button>
      <button class="secondary" disabled=${sending} onClick=${() => send(true)}>Dry run</button>
      <span class="muted">to ${message.devices.length} device${message.devices.length === 1 ? '' : 's'}</span>
    </div>
    <${ErrorBox} error=${error} />
    ${outcome
      ? kind === 'command' || outcome.dryRun
        ? html`<${CommandResults} results=${outcome.results} />`
        : html`<${ConfigFollow} key=${outcome.sentAt} results=${outcome.results} name=${message.name} sentAt=${outcome.sentAt} />`
      : null}
  </div>`;
}

export function SendPage({ kind, query, device }) {
  const { api, can } = useConsole();
  const k = KINDS[kind];
  let targets;
  let targetError = null;
  try {
    targets = targetsOf(query);
  } catch (e) {
    targetError = e;
    targets = { ids: [], names: [], namespaces: [], labels: {} };
  }
  const any = hasTargets(targets);
  const tq = targetsQuery(targets);
  const catalog = useData(() => (any ? api.get(k.path, tq) : Promise.resolve(null)), [api, kind, JSON.stringify(tq)]);
  const messages = useMemo(() => catalogMessages(catalog.data), [catalog.data]);
  const chosen = messages.find((m) => m.name === query.msg) ?? messages[0];
  const schemaDevice = chosen?.devices[0]?.deviceId;
  const schema = useData(() => (schemaDevice ? fetchSchema(api, schemaDevice) : Promise.resolve(null)), [api, schemaDevice]);
  const mayChange = can('POST', k.path);
  const problems = (catalog.data?.devices ?? []).filter((d) => d.error);
  const pick = (name) => (device ? (window.location.hash = href('devices', device.spec.deviceId, kind, { msg: name })) : setQuery({ ...query, msg: name }));

  return html`<section data-testid=${`send-${kind}`}>
    ${device ? null : html`<div class="page-head"><h1>${k.title}</h1></div>`}
    ${device ? null : html`<${TargetPicker} query=${query} kind=${kind} />`}
    <${ErrorBox} error=${targetError ?? catalog.error} />
    ${!any
      ? html`<div class="muted">Choose the devices to send to.</div>`
      : catalog.loading && !catalog.data
        ? html`<${Loading} what=${`the ${k.noun}s`} />`
        : html`
            ${problems.map((d) => html`<div class="note">${d.name}/${d.namespace}: ${d.error}</div>`)}
            ${!device ? html`<p class="muted">${(catalog.data?.devices ?? []).length} device(s) targeted.</p>` : null}
            ${messages.length === 0
              ? html`<div class="muted empty">These devices accept no ${k.noun}.</div>`
              : html`<div class="message-picker">
                    ${messages.map((m) => html`<button class=${m === chosen ? 'active' : 'secondary'} onClick=${() => pick(m.name)}>${m.name}</button>`)}
                  </div>
                  ${!mayChange
                    ? html`<div class="note">Your role may not send ${k.noun}s.</div><${Json} value=${chosen.template} />`
                    : schema.loading && !schema.data && !schema.error
                      ? html`<${Loading} what="the schema" />`
                      : html`<${Composer} key=${`${chosen.name}|${schema.data ? 'schema' : 'none'}`} kind=${kind} message=${chosen} schema=${schema.data} targets=${targets} single=${Boolean(device) || targets.ids.length === 1} />`}`}
          `}
  </section>`;
}
