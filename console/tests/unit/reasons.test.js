// The events page offers every reason the platform records (shared/src/domain/event.rs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const rust = readFileSync(fileURLToPath(new URL('../../../shared/src/domain/event.rs', import.meta.url)), 'utf8');

test('the reason filter lists exactly the EventReason variants of the platform', () => {
  // The page imports preact at module level; the list is plain data, read from the source.
  const page = readFileSync(fileURLToPath(new URL('../../src/pages/events.js', import.meta.url)), 'utf8');
  const list = /export const REASONS = \[([^\]]*)\]/.exec(page)[1];
  const offered = [...list.matchAll(/'([A-Za-z]+)'/g)].map((m) => m[1]);
  const body = /pub enum EventReason \{([^}]*)\}/.exec(rust)[1];
  const variants = body
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('//'))
    .map((l) => l.replace(/,$/, ''));
  assert.deepEqual(offered, variants);
});
