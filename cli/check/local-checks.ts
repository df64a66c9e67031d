import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadManifestFile, mergeManifests, type LoadedFile } from '../../control-plane/sources/manifest-loader.js';
import { fail, ok, type CheckOutcome } from './check-result.js';

/**
 * `wren check --source dir:DIR`: every manifest in DIR parses as the directory source
 * would read it (control-plane/sources/dir-source.ts: the same loader, the same errors
 * with file and field path), so a bad edit is caught before the control plane keeps the
 * last good version of that object and logs it.
 */
const MANIFEST = /\.(ya?ml|json)$/i;

export async function manifestsCheck(dir: string): Promise<CheckOutcome> {
  let names: string[];
  try {
    names = (await readdir(dir, { recursive: true })).filter((n) => MANIFEST.test(n) && !n.split(/[\\/]/).some((p) => p.startsWith('.'))).sort();
  } catch (e) {
    return fail('manifests', `cannot read ${dir}: ${(e as Error).message}`, 'pass the directory the control plane reads (--source dir:DIR)');
  }
  const files: [string, LoadedFile][] = [];
  for (const n of names) files.push([join(dir, n), loadManifestFile(join(dir, n), await readFile(join(dir, n), 'utf8'), undefined)]);
  const errors = [...files.flatMap(([, f]) => f.errors), ...mergeManifests(files).errors];
  const objects = files.reduce((n, [, f]) => n + f.objects.size, 0);
  const ignored = files.reduce((n, [, f]) => n + f.ignored.length, 0);
  if (errors.length > 0)
    return fail('manifests', `${errors.length} error(s): ${errors.slice(0, 5).join('; ')}${errors.length > 5 ? '; ...' : ''}`, 'fix the named field; the control plane keeps the last good version of a bad object and serves the rest');
  return ok('manifests', `${names.length} file(s), ${objects} object(s) parse${ignored ? ` (${ignored} of kinds Wren does not read, ignored)` : ''}`);
}
