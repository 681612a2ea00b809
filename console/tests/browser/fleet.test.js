// A fleet larger than a page: 150 devices created through the API are shown in pages of
// 100 and the search narrows them; a device is created and deleted from the console.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { consoleUrl, launch, pageErrors, screenshot } from '../support/browser.js';

const WAIT = { timeout: 60_000 };
const base = consoleUrl();
const ids = Array.from({ length: 150 }, (_, i) => `page-${String(i).padStart(3, '0')}`);

async function each(fn) {
  for (let i = 0; i < ids.length; i += 25) await Promise.all(ids.slice(i, i + 25).map(fn));
}

let browser;
before(async () => {
  await each(async (id) => {
    const r = await fetch(`${base}/v1/devices`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ meta: { name: id, namespace: 'paging', labels: { batch: 'p' } }, spec: { deviceId: id } }),
    });
    assert.equal(r.status, 201, await r.text());
  });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await each((id) => fetch(`${base}/v1/devices/${id}`, { method: 'DELETE' }));
});

test('a fleet larger than a page is shown in pages of 100', async () => {
  const page = await browser.context.newPage();
  const errors = pageErrors(page);
  await page.goto(`${base}/#/devices?namespace=paging`);
  const pager = page.locator('.pager span');
  await pager.waitFor(WAIT);
  assert.equal(await pager.innerText(), 'Page 1 of 2 (150 in all)');
  const rows = page.locator('[data-testid=fleet] tbody tr');
  assert.equal(await rows.count(), 100);
  assert.match(await rows.first().innerText(), /page-000/);
  await page.getByRole('button', { name: 'Next ›' }).click();
  assert.equal(await pager.innerText(), 'Page 2 of 2 (150 in all)');
  assert.equal(await rows.count(), 50);
  assert.match(await rows.last().innerText(), /page-149/);
  await screenshot(page, 'fleet-paging');

  await page.getByLabel('search').fill('page-12');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=fleet] tbody tr').length === 10, null, WAIT);
  assert.equal(await page.locator('.pager').count(), 0, 'one page needs no pager');

  await page.getByLabel('select the devices of this page').check();
  assert.match(await page.locator('.selection').innerText(), /^10 selected:/);
  assert.match(await page.locator('.selection a', { hasText: 'Send a command' }).getAttribute('href'), /^#\/commands\?ids=page-120%2Cpage-121%2C/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a device is created from the fleet page and deleted from its own', async () => {
  const page = await browser.context.newPage();
  const errors = pageErrors(page);
  await page.goto(`${base}/#/devices?labels=nolabel`);
  await page.getByRole('alert').waitFor(WAIT);
  assert.equal(await page.getByRole('alert').innerText(), 'label selector: "nolabel" must be key=value');

  await page.goto(`${base}/#/devices`);
  await page.getByRole('button', { name: 'New device' }).click();
  const form = page.locator('form.inline-form');
  await form.getByLabel('Device id').fill('bad id!');
  await page.getByRole('button', { name: 'Create' }).click();
  assert.equal(await page.getByRole('alert').innerText(), 'device id: must be 1 to 128 of a-z A-Z 0-9 : _ -');
  await form.getByLabel('Device id').fill('made-in-console');
  await form.getByLabel('Namespace').fill('lab');
  await form.getByLabel('Labels').fill('room=12, owner=ops');
  await page.getByRole('button', { name: 'Create' }).click();
  await page.locator('h1', { hasText: 'made-in-console/lab' }).waitFor(WAIT);
  assert.match(await page.locator('.facts').innerText(), /owner=ops[\s\S]*room=12|room=12[\s\S]*owner=ops/);
  const twin = await (await fetch(`${base}/v1/devices/made-in-console`)).json();
  assert.deepEqual(twin.meta.labels, { owner: 'ops', room: '12' });

  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Delete device' }).click();
  await page.locator('h1', { hasText: 'Fleet' }).waitFor(WAIT);
  assert.equal((await fetch(`${base}/v1/devices/made-in-console`)).status, 404);
  assert.deepEqual(errors, []);
  await page.close();
});
