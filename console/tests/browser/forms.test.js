// The generated form in the browser, on a schema richer than the weather device's
// (served to the page by the test): an enum as a select, a nested message, a repeated
// message field, a map, a well-known type as JSON text. The payload the console sends is
// captured and compared; a wrong field is named at the field and nothing is sent.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { consoleUrl, launch, pageErrors, screenshot } from '../support/browser.js';

const WAIT = { timeout: 60_000 };
const base = consoleUrl();
const field = (name, number, type, extra = {}) => ({ name, jsonName: name, number, type, cardinality: 'singular', ...extra });
const SCHEMA = {
  deviceId: 'weather',
  name: 'weather',
  namespace: 'default',
  packages: ['demo.v1'],
  messages: [
    {
      name: 'demo.v1.Setup',
      kind: 'command',
      template: { mode: 'MODE_OFF', gain: 0, enabled: false, steps: [], tags: {} },
      fields: [
        field('mode', 1, 'enum', { enumValues: [{ name: 'MODE_OFF', number: 0 }, { name: 'MODE_AUTO', number: 1 }] }),
        field('gain', 2, 'double'),
        field('enabled', 3, 'bool'),
        field('limits', 4, 'message', { messageType: 'demo.v1.Limits' }),
        field('steps', 5, 'message', { messageType: 'demo.v1.Step', cardinality: 'repeated' }),
        field('tags', 6, 'message', { messageType: 'demo.v1.Setup.TagsEntry', cardinality: 'map', mapKey: 'string', mapValue: { type: 'int32' } }),
        field('at', 7, 'message', { messageType: 'google.protobuf.Timestamp' }),
      ],
    },
    { name: 'demo.v1.Limits', kind: 'plain', template: { low: 0, high: 0 }, fields: [field('low', 1, 'float'), field('high', 2, 'float')] },
    { name: 'demo.v1.Step', kind: 'plain', template: { name: '', seconds: 0 }, fields: [field('name', 1, 'string'), field('seconds', 2, 'sint32')] },
  ],
};

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test('nested, repeated, map and enum fields are entered in the form and sent as proto3 JSON', async () => {
  const page = await browser.context.newPage();
  const errors = pageErrors(page);
  const sent = [];
  await page.route('**/v1/devices/weather/schema', (route) => route.fulfill({ json: SCHEMA }));
  await page.route((url) => url.pathname === '/v1/commands', (route) => {
    const r = route.request();
    if (r.method() === 'GET') {
      return route.fulfill({ json: { devices: [{ deviceId: 'weather', name: 'weather', namespace: 'default', messages: [{ name: 'demo.v1.Setup', template: SCHEMA.messages[0].template }] }] } });
    }
    const body = JSON.parse(r.postData());
    sent.push(body);
    return route.fulfill({ json: { results: [{ deviceId: 'weather', name: 'weather', namespace: 'default', status: 'VALIDATED' }] } });
  });
  await page.goto(`${base}/#/devices/weather/commands`);
  await page.locator('select[name="mode"]').waitFor(WAIT);
  assert.deepEqual(await page.locator('select[name="mode"] option').allInnerTexts(), ['MODE_OFF', 'MODE_AUTO'], 'the enum is a choice of its values');

  await page.locator('select[name="mode"]').selectOption('MODE_AUTO');
  await page.locator('[name="gain"]').fill('1.5');
  await page.locator('[name="enabled"]').check();
  await page.getByRole('button', { name: 'Set demo.v1.Limits' }).click();
  await page.locator('[name="limits.low"]').fill('-1');
  await page.getByRole('button', { name: 'add to steps' }).click();
  await page.locator('[name="steps[0].name"]').fill('warm');
  await page.locator('[name="steps[0].seconds"]').fill('2.5');
  await page.getByRole('button', { name: 'add to tags' }).click();
  await page.locator('[name="tags[0].key"]').fill('a');
  await page.locator('[name="tags[0].value"]').fill('1');
  await page.locator('[name="at"]').fill('"2026-01-01T00:00:00Z"');

  await page.getByRole('button', { name: 'Dry run' }).click();
  assert.equal(await page.getByTestId('form-errors').innerText(), 'steps[0].seconds: "2.5" is not a whole number (sint32)');
  assert.equal(await page.locator('[data-field="steps[0].seconds"] .field-error').innerText(), '"2.5" is not a whole number (sint32)', 'the error is shown at its field');
  assert.equal(await page.locator('[name="steps[0].seconds"]').getAttribute('aria-invalid'), 'true');
  assert.equal(sent.length, 0, 'nothing was sent');
  await screenshot(page, 'form-errors');

  await page.locator('[name="steps[0].seconds"]').fill('30');
  await page.getByRole('button', { name: 'Dry run' }).click();
  await page.locator('[data-testid=results] tbody tr', { hasText: 'VALIDATED' }).waitFor(WAIT);
  assert.deepEqual(sent, [
    {
      targets: { ids: ['weather'], names: [], namespaces: [], labels: {} },
      name: 'demo.v1.Setup',
      payload: { mode: 'MODE_AUTO', gain: 1.5, enabled: true, limits: { low: -1 }, steps: [{ name: 'warm', seconds: 30 }], tags: { a: 1 }, at: '2026-01-01T00:00:00Z' },
      dryRun: true,
    },
  ]);

  assert.equal(await page.getByRole('button', { name: 'unset steps[0]' }).count(), 0, 'a list item is removed, not unset');
  await page.getByRole('button', { name: 'unset limits' }).click();
  await page.getByRole('button', { name: 'Set demo.v1.Limits' }).waitFor(WAIT);
  await page.getByRole('button', { name: 'JSON' }).click();
  const json = JSON.parse(await page.getByLabel('payload').inputValue());
  assert.deepEqual(json.steps, [{ name: 'warm', seconds: 30 }], 'the JSON editor starts from the form');
  await page.getByLabel('payload').fill('{"mode": "MODE_OFF", "steps": [{"name": "a"}, {"name": "b"}]}');
  await page.getByRole('button', { name: 'Form' }).click();
  assert.equal(await page.locator('[name="steps[1].name"]').inputValue(), 'b', 'and the form from the JSON');
  await page.getByRole('button', { name: 'remove steps[0]' }).click();
  assert.equal(await page.locator('[name="steps[0].name"]').inputValue(), 'b');
  await screenshot(page, 'form');
  assert.deepEqual(errors, []);
  await page.close();
});
