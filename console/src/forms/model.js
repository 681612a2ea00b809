// The model behind the forms generated from a device schema (GET /v1/devices/{id}/schema):
// the state of a form (what the inputs hold, as typed), built from a JSON value such as
// the message's template, and turned back into the proto3 JSON payload with an error per
// field that is wrong, each naming the field by its JSON path (`settings.items[2].name`).
//
// State, per field kind: a message is an object of its fields' states (null: not set);
// a repeated field an array of item states; a map an array of {key, value} states;
// numbers, strings, bytes and enums the text typed or chosen; bool a boolean; a
// well-known type (google.protobuf.*) or a message the schema does not describe, JSON text.

const INT32 = ['int32', 'sint32', 'sfixed32'];
const UINT32 = ['uint32', 'fixed32'];
const INT64 = ['int64', 'sint64', 'sfixed64'];
const UINT64 = ['uint64', 'fixed64'];
const FLOATS = ['double', 'float'];
const MAX_DEPTH = 12;

/** The message of the schema with that full name, or undefined. */
export function messageByName(schema, name) {
  return schema?.messages?.find((m) => m.name === name);
}

/** How a value of `spec` ({type, messageType, enumValues}) is entered. */
export function inputKind(schema, spec) {
  const t = spec.type;
  if (t === 'bool') return 'bool';
  if (INT32.includes(t) || UINT32.includes(t) || INT64.includes(t) || UINT64.includes(t)) return 'int';
  if (FLOATS.includes(t)) return 'float';
  if (t === 'string') return 'string';
  if (t === 'bytes') return 'bytes';
  if (t === 'enum') return 'enum';
  if (t === 'message') {
    return messageByName(schema, spec.messageType) ? 'message' : 'json';
  }
  return 'json';
}

/** The element spec of a repeated field, the key and value specs of a map field. */
export function mapSpecs(field) {
  return { key: { type: field.mapKey ?? 'string' }, value: field.mapValue ?? { type: 'string' } };
}

function valueState(schema, spec, value, depth) {
  const kind = inputKind(schema, spec);
  switch (kind) {
    case 'bool':
      return value === true || value === 'true';
    case 'int':
    case 'float':
    case 'string':
    case 'bytes':
      return value === undefined || value === null ? '' : String(value);
    case 'enum': {
      if (value === undefined || value === null) return spec.enumValues?.[0]?.name ?? '';
      if (typeof value === 'number') return spec.enumValues?.find((e) => e.number === value)?.name ?? String(value);
      return String(value);
    }
    case 'message':
      if (depth >= MAX_DEPTH) return null;
      return value && typeof value === 'object' && !Array.isArray(value)
        ? messageState(schema, spec.messageType, value, depth + 1)
        : null;
    default:
      return value === undefined || value === null ? '' : JSON.stringify(value, null, 2);
  }
}

function messageState(schema, name, json, depth) {
  const msg = messageByName(schema, name);
  const state = {};
  for (const f of msg?.fields ?? []) {
    const v = json?.[f.jsonName] ?? json?.[f.name];
    if (f.cardinality === 'repeated') {
      state[f.jsonName] = Array.isArray(v) ? v.map((x) => valueState(schema, f, x, depth)) : [];
    } else if (f.cardinality === 'map') {
      const { key, value } = mapSpecs(f);
      state[f.jsonName] =
        v && typeof v === 'object'
          ? Object.entries(v).map(([k, x]) => ({ key: valueState(schema, key, k, depth), value: valueState(schema, value, x, depth) }))
          : [];
    } else {
      state[f.jsonName] = valueState(schema, f, v, depth);
    }
  }
  return state;
}

/** The state of a form for message `name`, filled from `json` (the template, a desired value). */
export function initialState(schema, name, json) {
  return messageState(schema, name, json ?? {}, 0);
}

/** A new item of a repeated field, or a new map value: the type's empty value. */
export function emptyValue(schema, spec) {
  const kind = inputKind(schema, spec);
  if (kind === 'message') return messageState(schema, spec.messageType, {}, 0);
  return valueState(schema, spec, undefined, 0);
}

const INT_TEXT = /^[-+]?\d+$/;
const FLOAT_TEXT = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;
const BASE64_TEXT = /^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BASE64URL_TEXT = /^[A-Za-z0-9_-]*$/;

function intRange(type) {
  if (INT32.includes(type)) return [-(2n ** 31n), 2n ** 31n - 1n];
  if (UINT32.includes(type)) return [0n, 2n ** 32n - 1n];
  if (INT64.includes(type)) return [-(2n ** 63n), 2n ** 63n - 1n];
  return [0n, 2n ** 64n - 1n];
}

/** One scalar: {value} (undefined: left empty, so not sent) or {error}. */
function scalar(spec, raw) {
  const t = spec.type;
  if (t === 'bool') return { value: Boolean(raw) };
  const text = typeof raw === 'string' ? raw.trim() : String(raw ?? '');
  if (t === 'string') return { value: raw === '' ? undefined : String(raw) };
  if (text === '') return { value: undefined };
  if (INT32.includes(t) || UINT32.includes(t) || INT64.includes(t) || UINT64.includes(t)) {
    if (!INT_TEXT.test(text)) return { error: `${JSON.stringify(text)} is not a whole number (${t})` };
    const n = BigInt(text);
    const [lo, hi] = intRange(t);
    if (n < lo || n > hi) return { error: `${text} is out of range for ${t} (${lo} to ${hi})` };
    // proto3 JSON: 64-bit integers as strings, so that every digit survives.
    return { value: INT64.includes(t) || UINT64.includes(t) ? n.toString() : Number(n) };
  }
  if (FLOATS.includes(t)) {
    if (!FLOAT_TEXT.test(text)) return { error: `${JSON.stringify(text)} is not a number (${t})` };
    const x = Number(text);
    if (!Number.isFinite(x) || (t === 'float' && Math.abs(x) > 3.4028234663852886e38)) {
      return { error: `${text} is out of range for ${t}` };
    }
    return { value: x };
  }
  if (t === 'bytes') {
    if (!BASE64_TEXT.test(text) && !BASE64URL_TEXT.test(text)) return { error: 'is not base64' };
    return { value: text };
  }
  if (t === 'enum') {
    const names = (spec.enumValues ?? []).map((e) => e.name);
    if (names.length && !names.includes(text)) return { error: `${JSON.stringify(text)} is not one of ${names.join(', ')}` };
    return { value: text };
  }
  return { error: `has the unknown type ${t}` };
}

function isSet(v) {
  if (v === undefined) return false;
  if (v && typeof v === 'object' && !Array.isArray(v)) return Object.keys(v).length > 0;
  if (Array.isArray(v)) return v.length > 0;
  return true;
}

function buildValue(schema, spec, state, path, errors, depth) {
  const kind = inputKind(schema, spec);
  if (kind === 'message') {
    if (state === null || state === undefined) return undefined;
    return buildMessage(schema, spec.messageType, state, path, errors, depth + 1);
  }
  if (kind === 'json') {
    const text = String(state ?? '').trim();
    if (text === '') return undefined;
    try {
      return JSON.parse(text);
    } catch (e) {
      errors.push({ path, message: `is not valid JSON (${spec.messageType ?? spec.type}): ${e.message}` });
      return undefined;
    }
  }
  const r = scalar(spec, state);
  if (r.error) errors.push({ path, message: r.error });
  return r.value;
}

function buildMessage(schema, name, state, prefix, errors, depth) {
  const msg = messageByName(schema, name);
  if (!msg) {
    errors.push({ path: prefix || name, message: `the schema has no message ${name}` });
    return undefined;
  }
  if (depth > MAX_DEPTH + 1) return undefined;
  const out = {};
  const oneofs = new Map();
  for (const f of msg.fields ?? []) {
    const path = prefix ? `${prefix}.${f.jsonName}` : f.jsonName;
    const s = state?.[f.jsonName];
    let v;
    if (f.cardinality === 'repeated') {
      const items = (s ?? []).map((item, i) => buildValue(schema, f, item, `${path}[${i}]`, errors, depth));
      v = items.length ? items.map((x) => (x === undefined ? emptyJson(schema, f) : x)) : undefined;
    } else if (f.cardinality === 'map') {
      const { key, value } = mapSpecs(f);
      const obj = {};
      (s ?? []).forEach((entry, i) => {
        const k = buildValue(schema, key, entry.key, `${path}[${i}].key`, errors, depth);
        if (k === undefined || k === '') {
          if (key.type !== 'string' || entry.key === '') errors.push({ path: `${path}[${i}].key`, message: 'is empty' });
          return;
        }
        const ks = String(k);
        if (Object.hasOwn(obj, ks)) {
          errors.push({ path: `${path}[${JSON.stringify(ks)}]`, message: 'is given twice' });
          return;
        }
        const x = buildValue(schema, value, entry.value, `${path}[${JSON.stringify(ks)}]`, errors, depth);
        obj[ks] = x === undefined ? emptyJson(schema, value) : x;
      });
      v = Object.keys(obj).length ? obj : undefined;
    } else {
      v = buildValue(schema, f, s, path, errors, depth);
      if (f.oneof && f.type === 'bool' && v === false) v = undefined;
    }
    if (f.oneof && !(f.cardinality === 'optional' && f.oneof.startsWith('_')) && isSet(v)) {
      const set = oneofs.get(f.oneof) ?? [];
      set.push(f.jsonName);
      oneofs.set(f.oneof, set);
    }
    if (isSet(v) || v === false || v === '' ) out[f.jsonName] = v;
  }
  for (const [oneof, set] of oneofs) {
    if (set.length > 1) {
      errors.push({ path: prefix ? `${prefix}.${oneof}` : oneof, message: `set only one of ${set.join(', ')} (oneof ${oneof})` });
    }
  }
  return out;
}

function emptyJson(schema, spec) {
  const kind = inputKind(schema, spec);
  if (kind === 'bool') return false;
  if (kind === 'message' || kind === 'json') return {};
  if (kind === 'string' || kind === 'bytes') return '';
  if (kind === 'enum') return spec.enumValues?.[0]?.name ?? 0;
  return INT64.includes(spec.type) || UINT64.includes(spec.type) ? '0' : 0;
}

/**
 * The proto3 JSON payload of a form's state, and the errors, each `{path, message}`
 * (`path` the field's JSON path). Fields left empty are not sent.
 */
export function buildPayload(schema, name, state) {
  const errors = [];
  const value = buildMessage(schema, name, state, '', errors, 0) ?? {};
  return { value, errors };
}

/** An error list as lines: `durationSec: "abc" is not a whole number (int32)`. */
export function formatErrors(errors) {
  return errors.map((e) => `${e.path}: ${e.message}`);
}

/** Parses a JSON payload typed by hand; the error names the payload. */
export function parsePayloadText(text) {
  try {
    const v = JSON.parse(text);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      return { errors: [{ path: 'payload', message: 'must be a JSON object' }] };
    }
    return { value: v, errors: [] };
  } catch (e) {
    return { errors: [{ path: 'payload', message: `is not valid JSON: ${e.message}` }] };
  }
}
