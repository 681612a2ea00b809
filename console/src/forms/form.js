// The form generated from a schema message (see model.js for its state): typed inputs,
// enums as selects, nested messages as fieldsets, repeated and map fields as lists with
// add and remove, well-known types as JSON text. Each input is labelled with its field's
// JSON path, and the error of a field is shown next to it.

import { html } from '../ui/common.js';
import { emptyValue, inputKind, mapSpecs, messageByName } from './model.js';

function ScalarInput({ schema, spec, value, path, onChange, error }) {
  const kind = inputKind(schema, spec);
  const common = { id: `f-${path}`, name: path, 'aria-label': path, 'aria-invalid': error ? 'true' : undefined };
  switch (kind) {
    case 'bool':
      return html`<input type="checkbox" ...${common} checked=${Boolean(value)} onChange=${(e) => onChange(e.target.checked)} />`;
    case 'enum':
      return html`<select ...${common} value=${value} onChange=${(e) => onChange(e.target.value)}>
        ${(spec.enumValues ?? []).map((ev) => html`<option value=${ev.name}>${ev.name}</option>`)}
      </select>`;
    case 'json':
      return html`<textarea class="code" rows="3" ...${common} placeholder=${`${spec.messageType ?? spec.type} as JSON`} value=${value} onInput=${(e) => onChange(e.target.value)}></textarea>`;
    default: {
      const placeholder = kind === 'int' ? spec.type : kind === 'float' ? spec.type : kind === 'bytes' ? 'base64' : '';
      return html`<input type="text" inputmode=${kind === 'int' || kind === 'float' ? 'decimal' : undefined} ...${common} placeholder=${placeholder} value=${value} onInput=${(e) => onChange(e.target.value)} />`;
    }
  }
}

function Value({ schema, spec, value, path, onChange, errors, depth, canUnset = false }) {
  if (inputKind(schema, spec) === 'message') {
    if (value === null || value === undefined) {
      return html`<button type="button" class="secondary small" onClick=${() => onChange(emptyValue(schema, spec))}>Set ${spec.messageType}</button>`;
    }
    return html`<${MessageFields} schema=${schema} name=${spec.messageType} state=${value} prefix=${path} onChange=${onChange} errors=${errors} depth=${depth + 1} />
      ${canUnset ? html`<button type="button" class="link small" aria-label=${`unset ${path}`} onClick=${() => onChange(null)}>unset</button>` : null}`;
  }
  return html`<${ScalarInput} schema=${schema} spec=${spec} value=${value} path=${path} onChange=${onChange} error=${errors[path]} />`;
}

function replaceAt(list, i, v) {
  const next = list.slice();
  next[i] = v;
  return next;
}

function FieldRow({ schema, field, value, path, onChange, errors, depth }) {
  const label = html`<span class="field-label">${field.jsonName} <small class="muted">${field.cardinality === 'map' ? `map<${field.mapKey}, ${field.mapValue?.messageType ?? field.mapValue?.type}>` : `${field.cardinality === 'repeated' ? 'repeated ' : ''}${field.messageType ?? field.type}`}</small></span>`;
  let input;
  if (field.cardinality === 'repeated') {
    const items = value ?? [];
    input = html`<div class="list">
      ${items.map(
        (item, i) => html`<div class="list-item">
          <${Value} schema=${schema} spec=${field} value=${item} path=${`${path}[${i}]`} onChange=${(v) => onChange(replaceAt(items, i, v))} errors=${errors} depth=${depth} />
          <button type="button" class="link small" aria-label=${`remove ${path}[${i}]`} onClick=${() => onChange(items.filter((_, j) => j !== i))}>remove</button>
        </div>`,
      )}
      <button type="button" class="secondary small" aria-label=${`add to ${path}`} onClick=${() => onChange([...items, emptyValue(schema, field)])}>Add</button>
    </div>`;
  } else if (field.cardinality === 'map') {
    const entries = value ?? [];
    const { key, value: vspec } = mapSpecs(field);
    input = html`<div class="list">
      ${entries.map(
        (entry, i) => html`<div class="list-item map-entry">
          <${ScalarInput} schema=${schema} spec=${key} value=${entry.key} path=${`${path}[${i}].key`} onChange=${(k) => onChange(replaceAt(entries, i, { ...entry, key: k }))} error=${errors[`${path}[${i}].key`]} />
          <span>→</span>
          <${Value} schema=${schema} spec=${vspec} value=${entry.value} path=${`${path}[${i}].value`} onChange=${(v) => onChange(replaceAt(entries, i, { ...entry, value: v }))} errors=${errors} depth=${depth} />
          <button type="button" class="link small" onClick=${() => onChange(entries.filter((_, j) => j !== i))}>remove</button>
        </div>`,
      )}
      <button type="button" class="secondary small" aria-label=${`add to ${path}`} onClick=${() => onChange([...entries, { key: emptyValue(schema, key), value: emptyValue(schema, vspec) }])}>Add</button>
    </div>`;
  } else {
    input = html`<${Value} schema=${schema} spec=${field} value=${value} path=${path} onChange=${onChange} errors=${errors} depth=${depth} canUnset />`;
  }
  const nested = inputKind(schema, field) === 'message' || field.cardinality === 'repeated' || field.cardinality === 'map';
  const own = errors[path];
  return html`<div class=${`form-row${nested ? ' nested' : ''}${own ? ' invalid' : ''}`} data-field=${path}>
    <label for=${`f-${path}`}>${label}</label>
    <div>${input}${own ? html`<div class="field-error">${own}</div>` : null}</div>
  </div>`;
}

function MessageFields({ schema, name, state, prefix, onChange, errors, depth }) {
  const msg = messageByName(schema, name);
  if (!msg) return html`<div class="error">The schema has no message ${name}.</div>`;
  if (depth > 12) return html`<div class="muted">(nested too deep)</div>`;
  const oneofs = [...new Set((msg.fields ?? []).filter((f) => f.oneof && !f.oneof.startsWith('_')).map((f) => f.oneof))];
  return html`<fieldset class="message-fields">
    ${prefix ? html`<legend>${name}</legend>` : null}
    ${(msg.fields ?? []).map((f) => {
      const path = prefix ? `${prefix}.${f.jsonName}` : f.jsonName;
      return html`<${FieldRow} key=${f.number} schema=${schema} field=${f} value=${state?.[f.jsonName]} path=${path} errors=${errors} depth=${depth} onChange=${(v) => onChange({ ...state, [f.jsonName]: v })} />`;
    })}
    ${oneofs.map((o) => {
      const p = prefix ? `${prefix}.${o}` : o;
      return errors[p] ? html`<div class="field-error" data-field=${p}>${p}: ${errors[p]}</div>` : null;
    })}
  </fieldset>`;
}

/**
 * The form of message `name`. `state`/`onChange`: its state (model.js); `errors`: the
 * errors of the last check, `{path, message}`; each is shown at its field.
 */
export function SchemaForm({ schema, name, state, onChange, errors = [] }) {
  const byPath = {};
  for (const e of errors) byPath[e.path] = byPath[e.path] ? `${byPath[e.path]}; ${e.message}` : e.message;
  return html`<div class="schema-form" data-message=${name}>
    <${MessageFields} schema=${schema} name=${name} state=${state} prefix="" onChange=${onChange} errors=${byPath} depth=${0} />
  </div>`;
}
