/**
 * Why a pod (or pod template) cannot be read by the injector, with the field's path, or
 * null. The API server sends only objects that passed its schema, so in the webhook this
 * guards against a caller that is not one; `wren inject` reads files people wrote, where an
 * unquoted YAML number in an annotation (`wren.io/skip-inbound-ports: 8080`) is the usual
 * mistake, one `kubectl apply` would refuse too ("cannot unmarshal number into ... string").
 * Only what the injector reads is checked: metadata's string maps and owner references,
 * the container lists (`containers` required, as the API server requires it), the volume
 * list, and each container's name, ports and probe paths and headers.
 */
export function podShapeProblem(pod: unknown): string | null {
  if (!isObject(pod)) return 'expected an object';
  const meta = pod['metadata'];
  if (meta !== undefined && meta !== null) {
    if (!isObject(meta)) return 'metadata: expected an object';
    for (const field of ['annotations', 'labels']) {
      const m = meta[field];
      if (m === undefined || m === null) continue;
      if (!isObject(m)) return `metadata.${field}: expected a map of strings`;
      for (const [k, v] of Object.entries(m)) if (typeof v !== 'string') return `metadata.${field}[${JSON.stringify(k)}]: expected a string, got ${describe(v)} (quote it in YAML)`;
    }
    const owners = meta['ownerReferences'];
    if (owners !== undefined && owners !== null && (!Array.isArray(owners) || !owners.every(isObject))) return 'metadata.ownerReferences: expected a list of objects';
  }
  const spec = pod['spec'];
  if (spec === undefined || spec === null) return null;
  if (!isObject(spec)) return 'spec: expected an object';
  if (spec['containers'] === undefined || spec['containers'] === null) return 'spec.containers: required (a list with at least the app container)';
  const volumes = spec['volumes'];
  if (volumes !== undefined && volumes !== null && (!Array.isArray(volumes) || !volumes.every(isObject))) return 'spec.volumes: expected a list of objects';
  for (const field of ['containers', 'initContainers']) {
    const list = spec[field];
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) return `spec.${field}: expected a list`;
    for (const [i, c] of list.entries()) {
      if (!isObject(c)) return `spec.${field}[${i}]: expected an object`;
      if (typeof c['name'] !== 'string') return `spec.${field}[${i}].name: expected a string, got ${describe(c['name'])}`;
      const ports = c['ports'];
      if (ports !== undefined && ports !== null && (!Array.isArray(ports) || !ports.every(isObject))) return `spec.${field}[${i}].ports: expected a list of objects`;
      for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
        const get = isObject(c[probe]) ? c[probe]['httpGet'] : undefined;
        if (!isObject(get)) continue;
        const at = `spec.${field}[${i}].${probe}.httpGet`;
        if (get['path'] !== undefined && get['path'] !== null && typeof get['path'] !== 'string') return `${at}.path: expected a string, got ${describe(get['path'])}`;
        const headers = get['httpHeaders'];
        if (headers === undefined || headers === null) continue;
        if (!Array.isArray(headers)) return `${at}.httpHeaders: expected a list`;
        for (const [j, h] of headers.entries())
          if (!isObject(h) || typeof h['name'] !== 'string' || typeof h['value'] !== 'string') return `${at}.httpHeaders[${j}]: expected {name, value} strings`;
      }
    }
  }
  return null;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const describe = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'a list' : `${typeof v} ${JSON.stringify(v)?.slice(0, 40) ?? ''}`.trim());
