// Headless Chromium (Debian's /usr/bin/chromium) through playwright-core, with the flags
// that keep it off the network, and a screenshot helper writing under
// target/console-screenshots/ (MIR_SCREENSHOTS).
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const SCREENSHOTS = process.env.MIR_SCREENSHOTS ?? resolve(here, '../../../target/console-screenshots');
export const CHROMIUM = process.env.MIR_CHROMIUM ?? '/usr/bin/chromium';

/** The console's URL (`MIR_CONSOLE_URL`, set by scripts/test-console.sh). */
export function consoleUrl() {
  const url = process.env.MIR_CONSOLE_URL;
  if (!url) throw new Error('MIR_CONSOLE_URL is not set: run scripts/test-console.sh');
  return url.replace(/\/+$/, '');
}

/** A headless Chromium with a fresh profile; `close()` stops it and removes the profile. */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'mir-console-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1360, height: 900 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Writes `<name>.png` of the whole page. */
export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** Collects the page's console errors and uncaught exceptions (a test asserts there are none). */
export function pageErrors(page) {
  const errors = [];
  page.on('pageerror', (e) => errors.push(`uncaught: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  return errors;
}
