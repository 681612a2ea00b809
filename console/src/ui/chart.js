// A time-series chart of telemetry rows with uPlot: one series per numeric field
// (booleans as 0/1), time on x. The time from creating the chart to its first draw is
// recorded as the performance measure `mir:chart-render` (the benchmark reads it).

import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

import { html } from './common.js';

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];

/** The numeric columns of rows: fields whose values are numbers or booleans. */
export function numericColumns(columns, rows) {
  return columns.filter((c) => rows.some((r) => typeof r.values?.[c] === 'number' || typeof r.values?.[c] === 'boolean'));
}

/** uPlot's columnar data: [[x seconds...], [y of field 1...], ...]. */
export function chartData(rows, fields) {
  const xs = new Float64Array(rows.length);
  const ys = fields.map(() => new Array(rows.length));
  rows.forEach((r, i) => {
    xs[i] = Date.parse(r.time) / 1000;
    fields.forEach((f, j) => {
      const v = r.values?.[f];
      ys[j][i] = typeof v === 'boolean' ? Number(v) : typeof v === 'number' ? v : null;
    });
  });
  return [xs, ...ys];
}

export function TimeChart({ rows, fields, height = 320 }) {
  const box = useRef(null);
  const plot = useRef(null);
  const shape = useRef('');
  const key = fields.join(',');
  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const data = chartData(rows, fields);
    const width = Math.max(320, el.clientWidth || 800);
    if (plot.current && shape.current === key) {
      plot.current.setData(data);
      return undefined;
    }
    plot.current?.destroy();
    shape.current = key;
    const start = performance.now();
    let first = true;
    const opts = {
      width,
      height,
      series: [{}, ...fields.map((f, i) => ({ label: f, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true }))],
      axes: [{}, { size: 60 }],
      scales: { x: { time: true } },
      hooks: {
        draw: [
          () => {
            if (!first) return;
            first = false;
            performance.measure('mir:chart-render', { start, end: performance.now(), detail: { points: rows.length * fields.length, rows: rows.length } });
            el.dataset.rendered = String(rows.length);
          },
        ],
      },
    };
    plot.current = new uPlot(opts, data, el);
    return undefined;
  }, [rows, key]);
  useEffect(() => () => plot.current?.destroy(), []);
  useEffect(() => {
    const onResize = () => plot.current && box.current && plot.current.setSize({ width: Math.max(320, box.current.clientWidth), height });
    window.addEventListener('resize', onResize);
    return () => window.removeEventListener('resize', onResize);
  }, [height]);
  return html`<div class="chart" ref=${box} data-testid="chart" data-points=${rows.length}></div>`;
}
