// The schema explorer: a device's messages by kind (telemetry, command, config, other),
// with their fields, types and `mir.device.v1` annotations (message tags, field tags,
// timestamp fields).

import { useConsole } from '../app.js';
import { html, useData, ErrorBox, Json, Labels, Loading, Table } from '../ui/common.js';

export const KIND_TITLES = { telemetry: 'Telemetry', command: 'Commands', config: 'Configuration', plain: 'Other messages' };

/** Fetches the schema of a device (GET /v1/devices/{id}/schema). */
export function fetchSchema(api, id) {
  return api.get(`/v1/devices/${encodeURIComponent(id)}/schema`);
}

/** A field's type as written in a .proto file: `repeated int32`, `map<string, Foo>`, `Mode`. */
export function typeText(f) {
  const base = (spec) => (spec.type === 'message' ? spec.messageType : spec.type === 'enum' ? `enum ${spec.messageType ?? ''}`.trim() : spec.type);
  if (f.cardinality === 'map') return `map<${f.mapKey}, ${base(f.mapValue ?? { type: '?' })}>`;
  const t = base(f);
  if (f.cardinality === 'repeated') return `repeated ${t}`;
  if (f.cardinality === 'optional') return `optional ${t}`;
  return t;
}

function annotations(f) {
  const parts = [];
  if (f.timestamp) parts.push(html`<span class="label">timestamp=${f.timestamp}</span>`);
  if (f.oneof) parts.push(html`<span class="label">oneof ${f.oneof}</span>`);
  if (f.enumValues?.length) parts.push(html`<span class="muted">${f.enumValues.map((e) => `${e.name}=${e.number}`).join(', ')}</span>`);
  if (f.tags && Object.keys(f.tags).length) parts.push(html`<${Labels} labels=${f.tags} />`);
  return parts.length ? parts : html`<span class="muted">—</span>`;
}

function Message({ m }) {
  return html`<details class="card message" open=${m.kind !== 'plain'}>
    <summary><code>${m.name}</code> ${m.tags && Object.keys(m.tags).length ? html`<${Labels} labels=${m.tags} />` : null}</summary>
    <${Table}
      rows=${m.fields ?? []}
      rowKey=${(f) => f.number}
      empty="No fields."
      columns=${[
        { label: '#', render: (f) => f.number, className: 'narrow' },
        { label: 'Field', render: (f) => html`<code>${f.name}</code>${f.jsonName !== f.name ? html` <span class="muted">(${f.jsonName})</span>` : null}` },
        { label: 'Type', render: (f) => html`<code>${typeText(f)}</code>` },
        { label: 'Annotations', render: annotations },
      ]}
    />
    ${m.template && Object.keys(m.template).length ? html`<div class="muted">JSON template</div><${Json} value=${m.template} />` : null}
  </details>`;
}

export function SchemaExplorer({ id }) {
  const { api } = useConsole();
  const { data, error } = useData(() => fetchSchema(api, id), [api, id]);
  if (!data) return error ? html`<${ErrorBox} error=${error} />` : html`<${Loading} what="the schema" />`;
  const kinds = ['telemetry', 'command', 'config', 'plain'];
  return html`<div data-testid="schema">
    <p class="muted">Packages: ${(data.packages ?? []).join(', ') || '—'}</p>
    ${kinds.map((k) => {
      const ms = (data.messages ?? []).filter((m) => m.kind === k);
      if (!ms.length) return null;
      return html`<h2>${KIND_TITLES[k]}</h2>${ms.map((m) => html`<${Message} key=${m.name} m=${m} />`)}`;
    })}
  </div>`;
}
