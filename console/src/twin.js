// Editing a twin with the rules of `mir dev edit`: meta, spec.disabled and
// properties.desired are the operator's; spec.deviceId, reported properties and status
// are the system's (changes to them are reported and left out). The edit is sent as a
// JSON merge patch (RFC 7386) of what changed.

/** The part of a twin an operator edits. */
export function editableDoc(twin) {
  return structuredClone({
    meta: {
      name: twin.meta?.name ?? '',
      namespace: twin.meta?.namespace ?? '',
      labels: twin.meta?.labels ?? {},
      annotations: twin.meta?.annotations ?? {},
    },
    spec: { deviceId: twin.spec?.deviceId ?? '', disabled: Boolean(twin.spec?.disabled) },
    properties: { desired: twin.properties?.desired ?? {} },
  });
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** The merge patch that turns `from` into `to` (null removes a key). */
export function mergePatchOf(from, to) {
  if (!isObject(from) || !isObject(to)) return to;
  const patch = {};
  for (const k of Object.keys(from)) {
    if (!(k in to)) patch[k] = null;
  }
  for (const [k, v] of Object.entries(to)) {
    if (!(k in from)) {
      patch[k] = v;
    } else if (JSON.stringify(from[k]) !== JSON.stringify(v)) {
      patch[k] = isObject(from[k]) && isObject(v) ? mergePatchOf(from[k], v) : v;
    }
  }
  return patch;
}

/**
 * Checks an edited document (the text of the editor) against the twin: returns
 * `{patch, ignored, errors}`; `patch` is null when nothing editable changed.
 */
export function twinEdit(twin, text) {
  let edited;
  try {
    edited = JSON.parse(text);
  } catch (e) {
    return { patch: null, ignored: [], errors: [`twin: is not valid JSON: ${e.message}`] };
  }
  if (!isObject(edited)) return { patch: null, ignored: [], errors: ['twin: must be a JSON object'] };
  const errors = [];
  const ignored = [];
  const meta = edited.meta ?? {};
  if (!isObject(meta)) errors.push('meta: must be an object');
  for (const key of ['name', 'namespace']) {
    if (isObject(meta) && key in meta && (typeof meta[key] !== 'string' || meta[key].trim() === '')) {
      errors.push(`meta.${key}: must be a non-empty string`);
    }
  }
  for (const key of ['labels', 'annotations']) {
    const m = isObject(meta) ? meta[key] : undefined;
    if (m === undefined || m === null) continue;
    if (!isObject(m)) {
      errors.push(`meta.${key}: must be an object of strings`);
      continue;
    }
    for (const [k, v] of Object.entries(m)) {
      if (typeof v !== 'string') errors.push(`meta.${key}.${k}: must be a string`);
    }
  }
  const spec = edited.spec ?? {};
  if (!isObject(spec)) errors.push('spec: must be an object');
  else if ('disabled' in spec && typeof spec.disabled !== 'boolean') errors.push('spec.disabled: must be true or false');
  if (isObject(spec) && 'deviceId' in spec && spec.deviceId !== twin.spec?.deviceId) ignored.push('spec.deviceId');
  const desired = edited.properties?.desired;
  if (desired !== undefined && !isObject(desired)) errors.push('properties.desired: must be an object');
  if (edited.properties?.reported !== undefined) ignored.push('properties.reported');
  if (edited.status !== undefined) ignored.push('status');
  if (errors.length) return { patch: null, ignored, errors };

  const original = editableDoc(twin);
  const next = {
    meta: { ...original.meta, ...(isObject(meta) ? meta : {}) },
    spec: { disabled: isObject(spec) && 'disabled' in spec ? spec.disabled : original.spec.disabled },
    properties: { desired: desired ?? original.properties.desired },
  };
  for (const key of ['labels', 'annotations']) next.meta[key] = next.meta[key] ?? {};
  const before = { meta: original.meta, spec: { disabled: original.spec.disabled }, properties: original.properties };
  const patch = mergePatchOf(before, next);
  return { patch: Object.keys(patch).length ? patch : null, ignored, errors };
}

/** The online state as shown: online, offline, or disabled. */
export function presence(twin) {
  if (twin.spec?.disabled) return 'disabled';
  return twin.status?.online ? 'online' : 'offline';
}

/** A twin's `name/namespace`. */
export function displayName(twin) {
  return `${twin.meta?.name ?? twin.spec?.deviceId}/${twin.meta?.namespace ?? 'default'}`;
}

/** Free-text match over name, namespace, id and labels (case-insensitive). */
export function matchesText(twin, text) {
  const t = String(text ?? '').trim().toLowerCase();
  if (!t) return true;
  const hay = [twin.meta?.name, twin.meta?.namespace, twin.spec?.deviceId, ...Object.entries(twin.meta?.labels ?? {}).map(([k, v]) => `${k}=${v}`)]
    .join(' ')
    .toLowerCase();
  return t.split(/\s+/).every((w) => hay.includes(w));
}
