import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { manifestsDir } from '../../cli/check/expected.js';

/** Every CRD the install ships (manifests/crds), by name, as `kubectl apply -k manifests/` would create them. */
export async function shippedCrds(): Promise<Map<string, Record<string, unknown>>> {
  const crds = new Map<string, Record<string, unknown>>();
  for (const f of (await readdir(join(manifestsDir(), 'crds'))).filter((n) => n.endsWith('.yaml'))) {
    const crd = parseAllDocuments(await readFile(join(manifestsDir(), 'crds', f), 'utf8'))[0].toJS() as { metadata: { name: string } };
    crds.set(crd.metadata.name, crd as unknown as Record<string, unknown>);
  }
  return crds;
}
