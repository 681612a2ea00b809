// Twin edits with the rules of `mir dev edit`, and the fleet's free-text filter.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { editableDoc, matchesText, mergePatchOf, presence, twinEdit } from '../../src/twin.js';
import { parseLabels, queryString, commandStatusName } from '../../src/api.js';
import { parseHash, href } from '../../src/router.js';

const TWIN = {
  apiVersion: 'mir/v1alpha',
  kind: 'device',
  meta: { name: 'weather', namespace: 'default', labels: { site: 'roof', old: 'x' }, annotations: {} },
  spec: { deviceId: 'weather', disabled: false },
  properties: { desired: { 'schema.v1.DataRateProp': { sec: 3 } }, reported: { 'schema.v1.DataRateStatus': { sec: 3 } } },
  status: { online: true },
};

test('an edit becomes a merge patch of what changed', () => {
  const doc = editableDoc(TWIN);
  doc.meta.labels = { site: 'roof', floor: '2' };
  doc.spec.disabled = true;
  doc.properties.desired['schema.v1.DataRateProp'] = { sec: 5 };
  const { patch, ignored, errors } = twinEdit(TWIN, JSON.stringify(doc));
  assert.deepEqual(errors, []);
  assert.deepEqual(ignored, []);
  assert.deepEqual(patch, {
    meta: { labels: { old: null, floor: '2' } },
    spec: { disabled: true },
    properties: { desired: { 'schema.v1.DataRateProp': { sec: 5 } } },
  });
});

test('changes to the device id, reported properties or status are ignored and named', () => {
  const doc = { ...editableDoc(TWIN), spec: { deviceId: 'other', disabled: false }, status: { online: false }, properties: { desired: {}, reported: {} } };
  const { patch, ignored } = twinEdit(TWIN, JSON.stringify(doc));
  assert.deepEqual(ignored, ['spec.deviceId', 'properties.reported', 'status']);
  assert.deepEqual(patch, { properties: { desired: { 'schema.v1.DataRateProp': null } } });
});

test('an edit that changes nothing sends nothing', () => {
  assert.equal(twinEdit(TWIN, JSON.stringify(editableDoc(TWIN))).patch, null);
});

test('invalid edits name the field', () => {
  assert.match(twinEdit(TWIN, '{').errors[0], /^twin: is not valid JSON/);
  assert.deepEqual(twinEdit(TWIN, JSON.stringify({ meta: { name: '', labels: { a: 1 } }, spec: { disabled: 'yes' } })).errors, [
    'meta.name: must be a non-empty string',
    'meta.labels.a: must be a string',
    'spec.disabled: must be true or false',
  ]);
});

test('merge patches follow RFC 7386', () => {
  assert.deepEqual(mergePatchOf({ a: 'b', c: { d: 'e', f: 'g' } }, { a: 'z', c: { d: 'e' } }), { a: 'z', c: { f: null } });
  assert.deepEqual(mergePatchOf({ a: [1] }, { a: [1, 2] }), { a: [1, 2] });
});

test('the fleet filter matches name, namespace, id and labels', () => {
  assert.equal(matchesText(TWIN, 'weath'), true);
  assert.equal(matchesText(TWIN, 'site=roof'), true);
  assert.equal(matchesText(TWIN, 'DEFAULT weather'), true);
  assert.equal(matchesText(TWIN, 'power'), false);
  assert.equal(presence(TWIN), 'online');
  assert.equal(presence({ ...TWIN, spec: { disabled: true } }), 'disabled');
});

test('label selectors, query strings, routes and status names', () => {
  assert.deepEqual(parseLabels('site=roof, floor=2'), { site: 'roof', floor: '2' });
  assert.throws(() => parseLabels('site'), { message: 'label selector: "site" must be key=value' });
  assert.equal(queryString({ ids: ['a', 'b'], labels: '', limit: 5, nextToken: undefined }), '?ids=a%2Cb&limit=5');
  assert.deepEqual(parseHash('#/devices/weather%2F1/telemetry?name=schema.v1.Env'), { parts: ['devices', 'weather/1', 'telemetry'], query: { name: 'schema.v1.Env' } });
  assert.equal(href('devices', 'w', 'config', { msg: 'a.B', empty: '' }), '#/devices/w/config?msg=a.B');
  assert.equal(commandStatusName('SUCCESS'), 'COMMAND_RESPONSE_STATUS_SUCCESS');
});
