// The console in headless Chromium against `mir local` with the weather example device
// (scripts/test-console.sh starts both and sets MIR_CONSOLE_URL). In order: the fleet
// shows the device online; its telemetry chart has points; a command sent through the
// generated form succeeds with the decoded response; a desired property sent through the
// configuration form comes back reported; the events page shows both. Each page is
// screenshotted under target/console-screenshots/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { consoleUrl, launch, pageErrors, screenshot } from '../support/browser.js';

// Waits are generous upper bounds for a slow shared machine, never speed assertions.
const WAIT = { timeout: 60_000 };

let browser;
let page;
let errors;
const base = consoleUrl();

before(async () => {
  browser = await launch();
  page = await browser.context.newPage();
  errors = pageErrors(page);
});

after(async () => {
  await browser?.close();
});

test('the fleet page shows the weather device online', async () => {
  await page.goto(`${base}/#/devices`);
  const row = page.locator('[data-testid=fleet] tbody tr', { hasText: 'weather' });
  await row.locator('.badge', { hasText: 'online' }).waitFor(WAIT);
  assert.equal(await row.locator('td').nth(1).innerText(), 'weather');
  assert.equal(await row.locator('td').nth(2).innerText(), 'default');
  assert.match(await row.locator('td').nth(5).innerText(), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/, 'the last heartbeat is shown');
  assert.match(await page.getByTestId('fleet-summary').innerText(), /^\d+ devices, \d+ online$/);
  assert.equal(await page.getByTestId('role').innerText(), 'admin', 'mir local on loopback: the role is admin');
  await screenshot(page, 'fleet');

  // Devices coming and going show up without a reload (the page polls).
  const created = await fetch(`${base}/v1/devices`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ meta: { name: 'console-new', namespace: 'lab', labels: { kind: 'probe' } }, spec: { deviceId: 'console-new' } }),
  });
  assert.equal(created.status, 201, await created.text());
  const newRow = page.locator('[data-testid=fleet] tbody tr', { hasText: 'console-new' });
  await newRow.waitFor(WAIT);
  assert.match(await newRow.innerText(), /lab[\s\S]*offline[\s\S]*kind=probe/);
  await page.getByLabel('namespace').fill('lab');
  await page.getByLabel('namespace').press('Tab');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=fleet] tbody tr').length === 1, null, WAIT);
  assert.match(await page.locator('[data-testid=fleet] tbody tr').innerText(), /console-new/);
  await page.getByLabel('namespace').fill('');
  await page.getByLabel('namespace').press('Tab');
  assert.equal((await fetch(`${base}/v1/devices/console-new`, { method: 'DELETE' })).ok, true);
  await newRow.waitFor({ ...WAIT, state: 'detached' });

  await page.getByLabel('search').fill('no-such-device');
  await page.getByText('No device matches.').waitFor(WAIT);
  await page.getByLabel('search').fill('weath');
  await row.waitFor(WAIT);
});

test('the device page shows the twin and its schema', async () => {
  await page.locator('[data-testid=fleet] a', { hasText: 'weather' }).click();
  await page.locator('h1', { hasText: 'weather/default' }).waitFor(WAIT);
  await page.locator('.facts dd', { hasText: 'schema.v1' }).waitFor(WAIT);
  await screenshot(page, 'device');
  await page.locator('.tabs a', { hasText: 'Schema' }).click();
  const schema = page.getByTestId('schema');
  await schema.locator('summary', { hasText: 'schema.v1.ActivateHVACCmd' }).waitFor(WAIT);
  const env = schema.locator('details', { hasText: 'schema.v1.Env' });
  assert.match(await env.locator('summary').innerText(), /site=roof/, 'the message tags are shown');
  assert.match(await env.locator('tr', { hasText: 'temperature' }).innerText(), /int32[\s\S]*unit=celsius/);
  assert.match(await env.locator('tr', { hasText: 'ts' }).first().innerText(), /timestamp=nano/);
  await screenshot(page, 'schema');
});

test('the twin is edited on the device page and the fleet filters by its new label', async () => {
  await page.locator('.tabs a', { hasText: 'Overview' }).click();
  const editor = page.getByLabel('twin', { exact: true });
  await editor.waitFor(WAIT);
  const doc = JSON.parse(await editor.inputValue());
  assert.deepEqual(Object.keys(doc), ['meta', 'spec', 'properties'], 'only the editable parts are offered');
  doc.meta.labels = { ...doc.meta.labels, site: 'roof' };
  doc.spec.deviceId = 'renamed';
  await editor.fill(JSON.stringify(doc, null, 2));
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('.facts dd .label', { hasText: 'site=roof' }).waitFor(WAIT);
  assert.equal(
    await page.locator('.note', { hasText: 'cannot be edited' }).innerText(),
    'spec.deviceId cannot be edited (only meta, spec.disabled and properties.desired are); those changes are ignored',
  );

  await editor.fill('{"meta": {"name": ""}}');
  await page.getByRole('button', { name: 'Save' }).click();
  assert.equal(await page.getByRole('alert').innerText(), 'meta.name: must be a non-empty string');

  await page.goto(`${base}/#/devices?labels=site%3Dcellar`);
  await page.getByText('No device matches.').waitFor(WAIT);
  await page.goto(`${base}/#/devices?labels=site%3Droof`);
  await page.locator('[data-testid=fleet] tbody tr', { hasText: 'weather' }).waitFor(WAIT);
  assert.equal(await page.locator('[data-testid=fleet] tbody tr').count(), 1);
});

test('a bulk dry run by label selector and by selection shows each device its result', async () => {
  await page.locator('.selection a', { hasText: 'Send a command' }).click();
  await page.getByText('1 device(s) targeted.').waitFor(WAIT);
  assert.match(page.url(), /#\/commands\?labels=site%3Droof$/);
  await page.locator('[name="durationSec"]').fill('2');
  await page.getByRole('button', { name: 'Dry run' }).click();
  const row = page.locator('[data-testid=results] tbody tr', { hasText: 'weather/default' });
  await row.waitFor(WAIT);
  assert.match(await row.innerText(), /COMMAND_RESPONSE_STATUS_VALIDATED/);

  await page.goto(`${base}/#/devices`);
  await page.getByLabel('select weather', { exact: true }).check();
  await page.locator('.selection a', { hasText: 'Send a command' }).click();
  await page.getByText('1 device(s) targeted.').waitFor(WAIT);
  assert.match(page.url(), /#\/commands\?ids=weather$/);
  await page.getByRole('button', { name: 'JSON' }).click();
  await page.getByLabel('payload').fill('{"durationSec": 3}');
  await page.getByRole('button', { name: 'Dry run' }).click();
  await page.locator('[data-testid=results] tbody tr', { hasText: 'VALIDATED' }).waitFor(WAIT);
  await screenshot(page, 'bulk-command');
  await page.goto(`${base}/#/devices?labels=site%3Droof`);
  await page.locator('.selection a', { hasText: 'Send configuration' }).click();
  await page.getByText('1 device(s) targeted.').waitFor(WAIT);
  await page.locator('[name="sec"]').waitFor(WAIT);
  await page.goto(`${base}/#/devices/weather`);
});

test('the telemetry tab charts the readings with points', async () => {
  await page.locator('.tabs a', { hasText: 'Telemetry' }).click();
  const chart = page.locator('[data-testid=chart][data-rendered]');
  await chart.waitFor(WAIT);
  assert.ok(Number(await chart.getAttribute('data-rendered')) >= 1, 'the chart has points');
  assert.equal(await chart.locator('canvas').count(), 1, 'uPlot drew on its canvas');
  assert.match(await chart.innerText(), /temperature/, 'the legend names the fields');
  const recent = page.locator('[data-testid=recent] tbody tr');
  assert.ok((await recent.count()) >= 1, 'the table of recent values has rows');
  const head = (await page.locator('[data-testid=recent] thead').innerText()).toLowerCase();
  for (const column of ['time', 'temperature', 'humidity', 'station']) assert.ok(head.includes(column), `recent values show ${column}: ${head}`);
  // Auto-refresh: the device sends every second, so the chart grows without a reload.
  const before = Number(await page.locator('[data-testid=chart]').getAttribute('data-points'));
  await page.waitForFunction((n) => Number(document.querySelector('[data-testid=chart]')?.dataset.points) > n, before, WAIT);
  for (const range of ['24 h', '7 d', '1 h']) {
    await page.getByRole('button', { name: range }).click();
    await page.locator('[data-testid=chart][data-rendered]').waitFor(WAIT);
  }
  await screenshot(page, 'telemetry');
  await page.getByRole('button', { name: 'Custom' }).click();
  const local = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
  await page.getByLabel('From').fill(local(new Date(Date.now() - 3_600_000)));
  await page.getByLabel('From').press('Tab');
  await page.getByLabel('To').fill(local(new Date(Date.now() + 3_600_000)));
  await page.getByLabel('To').press('Tab');
  await page.waitForFunction(() => /since=.*until=/.test(location.hash), null, WAIT);
  await page.locator('[data-testid=chart][data-rendered]').waitFor(WAIT);
  assert.equal(await page.getByLabel('Auto-refresh').count(), 0, 'a custom range is fixed');
  await page.getByLabel('From').fill(local(new Date('2001-01-01T00:00:00Z')));
  await page.getByLabel('From').press('Tab');
  await page.getByLabel('To').fill(local(new Date('2001-01-02T00:00:00Z')));
  await page.getByLabel('To').press('Tab');
  await page.getByText('No reading in this range.').first().waitFor(WAIT);
  await page.getByRole('button', { name: '15 min' }).click();

  // The link `mir tlm list` prints for a message opens its chart.
  await page.goto(`${base}/#/devices/weather/telemetry/schema.v1.Env`);
  await page.locator('[data-testid=chart][data-rendered]').waitFor(WAIT);
  assert.equal(await page.locator('.tabs.sub a.active').innerText(), await page.locator('.tabs.sub a', { hasText: 'schema.v1.Env' }).innerText());
  assert.match(await page.locator('.tabs.sub a.active').getAttribute('href'), /^#\/devices\/weather\/telemetry\/schema\.v1\.Env$/);
  await page.goto(`${base}/#/devices/weather`);
});

test('a command sent through the generated form succeeds with the decoded response', async () => {
  await page.locator('.tabs a', { hasText: 'Commands' }).click();
  const input = page.locator('[name="durationSec"]');
  await input.waitFor(WAIT);
  assert.equal(await input.inputValue(), '0', 'the JSON template is the starting point');

  await input.fill('soon');
  await page.getByRole('button', { name: 'Send command' }).click();
  const formErrors = page.getByTestId('form-errors');
  await formErrors.waitFor(WAIT);
  assert.equal(await formErrors.innerText(), 'durationSec: "soon" is not a whole number (int32)');
  assert.equal(await page.getByTestId('results').count(), 0, 'nothing was sent');

  await input.fill('1');
  await page.getByRole('button', { name: 'Send command' }).click();
  const row = page.locator('[data-testid=results] tbody tr', { hasText: 'weather/default' });
  await row.waitFor(WAIT);
  assert.match(await row.innerText(), /COMMAND_RESPONSE_STATUS_SUCCESS/);
  assert.match(await row.innerText(), /schema\.v1\.ActivateHVACResp/);
  assert.match(await row.locator('pre.json').innerText(), /^\{"success":true\}$/);
  await screenshot(page, 'command');
});

test('a desired property sent through the configuration form comes back reported', async () => {
  await page.locator('.tabs a', { hasText: 'Configuration' }).click();
  const input = page.locator('[name="sec"]');
  await input.waitFor(WAIT);
  await input.fill('2');
  await page.getByRole('button', { name: 'Send configuration' }).click();
  const row = page.locator('[data-testid=results] tbody tr', { hasText: 'weather/default' });
  await row.waitFor(WAIT);
  assert.match(await row.innerText(), /SENT/);
  assert.match(await row.locator('td').nth(2).innerText(), /\{"sec":2\}/, 'the desired value is shown');
  const reported = row.getByTestId('reported').filter({ hasText: 'schema.v1.DataRateStatus' });
  await reported.waitFor(WAIT);
  assert.match(await reported.innerText(), /schema\.v1\.DataRateStatus\s+\{"sec":2\}/);
  await screenshot(page, 'config');

  await page.locator('.tabs a', { hasText: 'Overview' }).click();
  const props = page.locator('[data-testid=properties] tbody tr', { hasText: 'schema.v1.DataRateProp' });
  await props.waitFor(WAIT);
  assert.match(await props.innerText(), /\{"sec":2\}\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/, 'the overview shows the desired value with its time');
  const status = page.locator('[data-testid=properties] tbody tr', { hasText: 'schema.v1.DataRateStatus' });
  assert.match(await status.locator('td').nth(3).innerText(), /\{"sec":2\}/, 'and the reported value beside it');
  assert.match(await status.locator('td').nth(4).innerText(), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/, 'with its time');
});

test('the events page shows the command and the property change', async () => {
  await page.goto(`${base}/#/events?deviceId=weather`);
  const table = page.getByTestId('events-table');
  for (const reason of ['CommandSent', 'CommandCompleted', 'DesiredPropertiesUpdated', 'ReportedPropertiesUpdated']) {
    await table.locator('td', { hasText: reason }).first().waitFor(WAIT);
  }
  await screenshot(page, 'events');

  await page.getByLabel('reason').selectOption('CommandCompleted');
  await page.waitForFunction(() => {
    const cells = [...document.querySelectorAll('[data-testid=events-table] tbody tr td:nth-child(2)')];
    return cells.length > 0 && cells.every((c) => c.textContent === 'CommandCompleted');
  }, null, WAIT);

  await page.getByLabel('until').fill('2001-01-01T00:00');
  await page.getByLabel('until').press('Tab');
  await page.getByText('No event matches.').waitFor(WAIT);
  await page.getByLabel('until').fill('');
  await page.getByLabel('since').fill('1h');
  await page.getByLabel('since').press('Tab');
  await table.locator('td', { hasText: 'CommandCompleted' }).first().waitFor(WAIT);

  await page.goto(`${base}/#/devices/weather/events`);
  const timeline = page.getByTestId('timeline');
  await timeline.locator('li', { hasText: 'ReportedPropertiesUpdated' }).first().waitFor(WAIT);
  assert.ok((await timeline.locator('li', { hasText: 'CommandSent' }).count()) >= 1);
  await screenshot(page, 'timeline');
});

test('with a token hub config the console asks for the token once and sends it on API calls', async () => {
  const tokenPage = await browser.context.newPage();
  await tokenPage.route('**/config.json', (route) => route.fulfill({ json: { api: '', auth: { kind: 'token' } } }));
  const seen = [];
  tokenPage.on('request', (r) => {
    if (r.url().includes('/v1/devices')) seen.push(r.headers().authorization);
  });
  await tokenPage.goto(`${base}/#/devices`);
  await tokenPage.getByLabel('API token').fill('console-test-token-0123');
  await screenshot(tokenPage, 'token-sign-in');
  await tokenPage.getByRole('button', { name: 'Sign in' }).click();
  await tokenPage.locator('[data-testid=fleet] tbody tr', { hasText: 'weather' }).waitFor(WAIT);
  assert.equal(seen[0], 'Bearer console-test-token-0123');
  await tokenPage.reload();
  await tokenPage.locator('[data-testid=fleet] tbody tr', { hasText: 'weather' }).waitFor(WAIT);
  assert.equal(await tokenPage.getByLabel('API token').count(), 0, 'the token is kept for the tab');
  await tokenPage.close();
});

test('no page raised an error in the browser', () => {
  assert.deepEqual(errors, []);
});
