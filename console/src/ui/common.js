// Shared pieces of every page: the `html` template tag, data hooks (load once, poll),
// and small components (error box, badges, times, JSON, tables, tabs).

import { h } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';

export const html = htm.bind(h);

/**
 * Runs `load` (an async function) when `deps` change (dropping the data of the old
 * ones), and every `pollMs` if given. Returns {data, error, loading, reload}. A failed
 * poll keeps the last data.
 */
export function useData(load, deps, pollMs = 0) {
  const [state, setState] = useState({ data: undefined, error: null, loading: true });
  const gen = useRef(0);
  const run = useCallback(async () => {
    const mine = ++gen.current;
    try {
      const data = await load();
      if (mine === gen.current) setState({ data, error: null, loading: false });
    } catch (error) {
      if (mine === gen.current) setState((s) => ({ data: s.data, error, loading: false }));
    }
  }, deps);
  const lastRun = useRef(null);
  useEffect(() => {
    // New inputs: what was shown belongs to the old ones (a new poll rate keeps it).
    if (lastRun.current !== run) setState({ data: undefined, error: null, loading: true });
    lastRun.current = run;
    run();
    if (!pollMs) return () => gen.current++;
    const timer = setInterval(run, pollMs);
    return () => {
      clearInterval(timer);
      gen.current++;
    };
  }, [run, pollMs]);
  return { ...state, reload: run };
}

export function ErrorBox({ error }) {
  if (!error) return null;
  const lines = Array.isArray(error) ? error : [error.message ?? String(error)];
  return html`<div class="error" role="alert">${lines.map((l) => html`<div>${l}</div>`)}</div>`;
}

export function Loading({ what = '' }) {
  return html`<div class="muted">Loading${what ? ` ${what}` : ''}…</div>`;
}

export function Badge({ kind, children }) {
  return html`<span class=${`badge badge-${kind}`}>${children}</span>`;
}

const STATUS_KIND = { SUCCESS: 'ok', VALIDATED: 'ok', SENT: 'ok', STORED: 'warn', PENDING: 'warn', TIMEOUT: 'bad', ERROR: 'bad' };

/** A status badge: green for success, amber for waiting, red for failures. */
export function StatusBadge({ status, label }) {
  const key = String(status ?? '').replace('COMMAND_RESPONSE_STATUS_', '');
  return html`<${Badge} kind=${STATUS_KIND[key] ?? 'plain'}>${label ?? status}<//>`;
}

export function PresenceBadge({ state }) {
  const kind = state === 'online' ? 'ok' : state === 'disabled' ? 'warn' : 'plain';
  return html`<${Badge} kind=${kind}>${state}<//>`;
}

/** `2026-12-02 10:00:03` (local time) with "12 s ago" as its title; "—" for none. */
export function Time({ value }) {
  if (!value) return html`<span class="muted">—</span>`;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return html`<span>${String(value)}</span>`;
  return html`<time datetime=${d.toISOString()} title=${ago(d)}>${formatTime(d)}</time>`;
}

export function formatTime(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function ago(d, now = Date.now()) {
  const s = Math.round((now - d.getTime()) / 1000);
  if (s < 0) return 'in the future';
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function Json({ value, compact = false }) {
  if (value === undefined) return html`<span class="muted">—</span>`;
  return html`<pre class=${compact ? 'json compact' : 'json'}>${JSON.stringify(value, null, compact ? 0 : 2)}</pre>`;
}

export function Labels({ labels }) {
  const entries = Object.entries(labels ?? {});
  if (!entries.length) return html`<span class="muted">—</span>`;
  return entries.map(([k, v]) => html`<span class="label">${k}=${v}</span>`);
}

/**
 * A table: `columns` = [{key, label, render?(row), className?}], `rows`, an optional
 * `rowKey(row)` and `empty` text.
 */
export function Table({ columns, rows, rowKey, empty = 'Nothing to show.', testid }) {
  if (!rows?.length) return html`<div class="muted empty" data-testid=${testid}>${empty}</div>`;
  return html`<table class="table" data-testid=${testid}>
    <thead>
      <tr>${columns.map((c) => html`<th class=${c.className}>${c.label}</th>`)}</tr>
    </thead>
    <tbody>
      ${rows.map(
        (row, i) => html`<tr key=${rowKey ? rowKey(row) : i}>
          ${columns.map((c) => html`<td class=${c.className}>${c.render ? c.render(row) : row[c.key]}</td>`)}
        </tr>`,
      )}
    </tbody>
  </table>`;
}

/** Client-side pages over `items`: the page shown and its controls. */
export function usePages(items, pageSize) {
  const [page, setPage] = useState(0);
  const pages = Math.max(1, Math.ceil(items.length / pageSize));
  const current = Math.min(page, pages - 1);
  const shown = items.slice(current * pageSize, (current + 1) * pageSize);
  const controls = html`<div class="pager">
    <button disabled=${current === 0} onClick=${() => setPage(0)}>« First</button>
    <button disabled=${current === 0} onClick=${() => setPage(current - 1)}>‹ Previous</button>
    <span>Page ${current + 1} of ${pages} (${items.length} in all)</span>
    <button disabled=${current >= pages - 1} onClick=${() => setPage(current + 1)}>Next ›</button>
    <button disabled=${current >= pages - 1} onClick=${() => setPage(pages - 1)}>Last »</button>
  </div>`;
  return { shown, controls, reset: () => setPage(0) };
}

/** Tabs as links: `tabs` = [{href, label}], `active` the href of the current one. */
export function Tabs({ tabs, active }) {
  return html`<nav class="tabs">
    ${tabs.map((t) => html`<a href=${t.href} class=${t.href === active ? 'active' : ''}>${t.label}</a>`)}
  </nav>`;
}

/** A labelled filter or form input row. */
export function Field({ label, children, hint }) {
  return html`<label class="field"><span class="field-label">${label}</span>${children}${hint ? html`<small class="muted">${hint}</small>` : null}</label>`;
}
