// Forms generated from a schema: state from a template, the payload back, errors naming the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { buildPayload, emptyValue, formatErrors, initialState, inputKind, parsePayloadText } from '../../src/forms/model.js';

const f = (name, number, type, extra = {}) => ({ name, jsonName: name.replace(/_([a-z])/g, (_, c) => c.toUpperCase()), number, type, cardinality: 'singular', ...extra });

const SCHEMA = {
  messages: [
    { name: 'schema.v1.ActivateHVACCmd', kind: 'command', fields: [f('duration_sec', 1, 'int32')] },
    {
      name: 'demo.v1.Setup',
      kind: 'config',
      fields: [
        f('mode', 1, 'enum', { enumValues: [{ name: 'MODE_OFF', number: 0 }, { name: 'MODE_AUTO', number: 1 }] }),
        f('gain', 2, 'double'),
        f('enabled', 3, 'bool'),
        f('counter', 4, 'uint64'),
        f('label', 5, 'string'),
        f('blob', 6, 'bytes'),
        f('limits', 7, 'message', { messageType: 'demo.v1.Limits' }),
        f('steps', 8, 'message', { messageType: 'demo.v1.Step', cardinality: 'repeated' }),
        f('tags', 9, 'string', { cardinality: 'map', mapKey: 'string', mapValue: { type: 'int32' } }),
        f('at', 10, 'message', { messageType: 'google.protobuf.Timestamp' }),
        f('by_name', 11, 'string', { oneof: 'target' }),
        f('by_id', 12, 'int32', { oneof: 'target' }),
        f('levels', 13, 'int32', { cardinality: 'repeated' }),
      ],
    },
    { name: 'demo.v1.Limits', kind: 'plain', fields: [f('low', 1, 'float'), f('high', 2, 'float')] },
    { name: 'demo.v1.Step', kind: 'plain', fields: [f('name', 1, 'string'), f('seconds', 2, 'sint32')] },
  ],
};

test('a template fills the form and comes back as the same payload', () => {
  const state = initialState(SCHEMA, 'schema.v1.ActivateHVACCmd', { durationSec: 0 });
  assert.deepEqual(state, { durationSec: '0' });
  state.durationSec = '5';
  assert.deepEqual(buildPayload(SCHEMA, 'schema.v1.ActivateHVACCmd', state), { value: { durationSec: 5 }, errors: [] });
});

test('inputs follow the field types: enums as choices, nested messages, well-known types as JSON', () => {
  const field = (n) => SCHEMA.messages[1].fields.find((x) => x.name === n);
  assert.equal(inputKind(SCHEMA, field('mode')), 'enum');
  assert.equal(inputKind(SCHEMA, field('limits')), 'message');
  assert.equal(inputKind(SCHEMA, field('at')), 'json');
  assert.equal(inputKind(SCHEMA, field('counter')), 'int');
  assert.equal(inputKind(SCHEMA, field('enabled')), 'bool');
  assert.deepEqual(emptyValue(SCHEMA, field('steps')), { name: '', seconds: '' });
});

test('nested, repeated and map fields build the proto3 JSON payload', () => {
  const state = initialState(SCHEMA, 'demo.v1.Setup', {
    mode: 'MODE_AUTO',
    gain: 1.5,
    enabled: true,
    counter: '18446744073709551615',
    limits: { low: -1, high: 2.5 },
    steps: [{ name: 'warm', seconds: 30 }],
    tags: { a: 1 },
    at: '2026-01-01T00:00:00Z',
    levels: [1, 2],
  });
  state.steps.push({ name: 'hold', seconds: '-5' });
  state.tags.push({ key: 'b', value: '2' });
  const { value, errors } = buildPayload(SCHEMA, 'demo.v1.Setup', state);
  assert.deepEqual(errors, []);
  assert.deepEqual(value, {
    mode: 'MODE_AUTO',
    gain: 1.5,
    enabled: true,
    counter: '18446744073709551615',
    limits: { low: -1, high: 2.5 },
    steps: [{ name: 'warm', seconds: 30 }, { name: 'hold', seconds: -5 }],
    tags: { a: 1, b: 2 },
    at: '2026-01-01T00:00:00Z',
    levels: [1, 2],
  });
});

test('an enum given as its number in the template shows as its name', () => {
  assert.equal(initialState(SCHEMA, 'demo.v1.Setup', { mode: 1 }).mode, 'MODE_AUTO');
});

test('bad input gives errors that name each field by its path', () => {
  const state = initialState(SCHEMA, 'demo.v1.Setup', {});
  state.gain = 'fast';
  state.counter = '-1';
  state.blob = 'not base64!';
  state.limits = { low: '1e999', high: '' };
  state.steps = [{ name: 'ok', seconds: '1' }, { name: 'bad', seconds: '2.5' }];
  state.tags = [{ key: 'a', value: '1' }, { key: 'a', value: '2' }];
  state.at = '{nope';
  state.byName = 'x';
  state.byId = '3';
  state.levels = ['1', '99999999999'];
  const { errors } = buildPayload(SCHEMA, 'demo.v1.Setup', state);
  const lines = formatErrors(errors);
  assert.match(lines[6], /^at: is not valid JSON \(google\.protobuf\.Timestamp\): /);
  lines[6] = 'at: (JSON error)';
  assert.deepEqual(lines, [
    'gain: "fast" is not a number (double)',
    'counter: -1 is out of range for uint64 (0 to 18446744073709551615)',
    'blob: is not base64',
    'limits.low: 1e999 is out of range for float',
    'steps[1].seconds: "2.5" is not a whole number (sint32)',
    'tags["a"]: is given twice',
    'at: (JSON error)',
    'levels[1]: 99999999999 is out of range for int32 (-2147483648 to 2147483647)',
    'target: set only one of byName, byId (oneof target)',
  ]);
});

test('a command field that is not a number is refused by name, never sent', () => {
  const { value, errors } = buildPayload(SCHEMA, 'schema.v1.ActivateHVACCmd', { durationSec: 'abc' });
  assert.deepEqual(formatErrors(errors), ['durationSec: "abc" is not a whole number (int32)']);
  assert.deepEqual(value, {});
});

test('empty inputs are left out of the payload', () => {
  const state = initialState(SCHEMA, 'demo.v1.Setup', {});
  const { value, errors } = buildPayload(SCHEMA, 'demo.v1.Setup', state);
  assert.deepEqual(errors, []);
  assert.deepEqual(value, { mode: 'MODE_OFF', enabled: false });
});

test('a hand-typed JSON payload must be an object', () => {
  assert.deepEqual(parsePayloadText('{"sec": 2}'), { value: { sec: 2 }, errors: [] });
  assert.deepEqual(formatErrors(parsePayloadText('[1]').errors), ['payload: must be a JSON object']);
  assert.match(formatErrors(parsePayloadText('{').errors)[0], /^payload: is not valid JSON/);
});
