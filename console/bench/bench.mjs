// The console's speed in headless Chromium (scripts/bench-console.sh starts the hub):
// - fleet: the fleet page with 1,000 devices, from navigation to the table rendered
//   (page load, config.json, GET /v1/devices over its pages, render), and the render
//   alone (data in hand -> table committed), from the page's performance marks;
// - chart: the telemetry page's uPlot chart of 10,000 points (one numeric field, 10,000
//   readings), from creating the chart to its first draw (performance measure
//   mir:chart-render); the readings are served to the page by the bench (page.route).
// Prints the runs and their median as JSON. Speed is measured here, never asserted in tests.
import { launch } from '../tests/support/browser.js';

const base = (process.env.MIR_CONSOLE_URL ?? '').replace(/\/+$/, '');
if (!base) throw new Error('MIR_CONSOLE_URL is not set: run scripts/bench-console.sh');
const DEVICES = Number(process.env.MIR_BENCH_DEVICES ?? 1000);
const POINTS = Number(process.env.MIR_BENCH_POINTS ?? 10000);
const RUNS = Number(process.env.MIR_BENCH_RUNS ?? 5);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (x) => Math.round(x * 10) / 10;

/** Waits (bounded) until `n` devices of a running `mir swarm` (MIR_BENCH_SWARM) are online. */
async function awaitSwarm(n) {
  for (let i = 0; i < 240; i++) {
    let online = 0;
    let token;
    do {
      const q = new URLSearchParams({ limit: '1000', ...(token ? { nextToken: token } : {}) });
      const page = await (await fetch(`${base}/v1/devices?${q}`)).json();
      online += page.devices.filter((d) => d.status?.online).length;
      token = page.nextToken;
    } while (token);
    if (online >= n) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`the swarm's ${n} devices did not come online`);
}

async function createFleet() {
  if (process.env.MIR_BENCH_SWARM) {
    await awaitSwarm(DEVICES);
    // The chart's device (its readings are served by the bench, see chartRun).
    await fetch(`${base}/v1/devices`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ meta: { name: 'bench-0000' }, spec: { deviceId: 'bench-0000' } }) });
    return;
  }
  const have = await (await fetch(`${base}/v1/devices?limit=1`)).json();
  if (have.devices.length) return;
  const ids = Array.from({ length: DEVICES }, (_, i) => `bench-${String(i).padStart(4, '0')}`);
  for (let i = 0; i < ids.length; i += 25) {
    await Promise.all(
      ids.slice(i, i + 25).map(async (id, j) => {
        const body = { meta: { name: id, namespace: (i + j) % 2 ? 'factory' : 'default', labels: { group: `g${(i + j) % 10}`, site: 'bench' } }, spec: { deviceId: id } };
        const r = await fetch(`${base}/v1/devices`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        if (!r.ok) throw new Error(`create ${id}: ${r.status} ${await r.text()}`);
      }),
    );
  }
}

async function fleetRun(context) {
  const page = await context.newPage();
  await page.goto(`${base}/#/devices`);
  const marks = await page.waitForFunction(
    (n) => {
      const rendered = performance.getEntriesByName('mir:fleet-rendered').find((m) => m.detail?.devices >= n);
      const data = performance.getEntriesByName('mir:fleet-data').find((m) => m.detail?.devices >= n);
      return rendered && data ? { total: rendered.startTime, render: rendered.startTime - data.startTime, rows: document.querySelectorAll('[data-testid=fleet] tbody tr').length } : null;
    },
    DEVICES,
    { timeout: 60_000, polling: 10 },
  );
  const result = await marks.jsonValue();
  await page.close();
  return result;
}

function telemetryRows(n) {
  const start = Date.now() - n * 1000;
  return Array.from({ length: n }, (_, i) => ({ time: new Date(start + i * 1000).toISOString(), values: { value: Math.sin(i / 50) * 20 + (i % 7) } }));
}

async function chartRun(context, rows) {
  const page = await context.newPage();
  await page.route('**/v1/telemetry?**', (route) =>
    route.fulfill({ json: { devices: [{ deviceId: 'bench-0000', name: 'bench-0000', namespace: 'default', messages: [{ measure: 'bench.v1.Wave', count: rows.length, lastTimeNs: 0 }], fields: { 'bench.v1.Wave': ['value'] } }] } }),
  );
  await page.route('**/v1/telemetry/query?**', (route) => route.fulfill({ json: { deviceId: 'bench-0000', measure: 'bench.v1.Wave', columns: ['value'], rows } }));
  await page.goto(`${base}/#/devices/bench-0000/telemetry?auto=off`);
  const handle = await page.waitForFunction(
    () => {
      const m = performance.getEntriesByName('mir:chart-render')[0];
      return m ? { render: m.duration, points: m.detail.points } : null;
    },
    null,
    { timeout: 60_000, polling: 10 },
  );
  const result = await handle.jsonValue();
  await page.close();
  return result;
}

await createFleet();
const browser = await launch();
try {
  await fleetRun(browser.context); // warm-up: the browser's caches, the hub's first reads
  const fleet = [];
  for (let i = 0; i < RUNS; i++) fleet.push(await fleetRun(browser.context));
  const rows = telemetryRows(POINTS);
  await chartRun(browser.context, rows);
  const chart = [];
  for (let i = 0; i < RUNS; i++) chart.push(await chartRun(browser.context, rows));
  const out = {
    fleet: { devices: DEVICES, rowsShown: fleet[0].rows, totalMs: fleet.map((r) => round(r.total)), renderMs: fleet.map((r) => round(r.render)), medianTotalMs: round(median(fleet.map((r) => r.total))), medianRenderMs: round(median(fleet.map((r) => r.render))) },
    chart: { points: chart[0].points, renderMs: chart.map((r) => round(r.render)), medianRenderMs: round(median(chart.map((r) => r.render))) },
  };
  console.log(JSON.stringify(out, null, 2));
} finally {
  await browser.close();
}
