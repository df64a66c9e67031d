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
  // Accepted and enforced as written, but a value in them never matches (an AuthorizationPolicy's authzNeverMatching).
  const warnings = files.flatMap(([, f]) => f.warnings).map((w) => `warning: ${w}`);
  // Read with no previous version, as a control plane that just started reads them: a refused AuthorizationPolicy is then enforced fail-closed.
  const failClosed = files.flatMap(([, f]) => f.rejected).filter((r) => r.failClosed !== undefined);
  if (errors.length > 0) {
    const hint = failClosed.length === 0
      ? 'fix the named field; the control plane keeps the last good version of a bad object and serves the rest'
      : 'fix the named field; the control plane keeps the last good version of a bad object and serves the rest. ' +
        `A refused AuthorizationPolicy with no last good version (a control plane that just started, or a new object) is enforced fail-closed instead: ${failClosed.length} here would be ` +
        '(a refused ALLOW as an ALLOW that matches nothing, a refused DENY or unreadable action as a DENY of every request, for the workloads it selects; see the lines above)';
    const details = [...failClosed.map((r) => `${r.file}: AuthorizationPolicy ${r.namespace}/${r.name}: enforced fail-closed: ${r.failClosed}`), ...warnings];
    return fail('manifests', `${errors.length} error(s): ${errors.slice(0, 5).join('; ')}${errors.length > 5 ? '; ...' : ''}`, hint, details);
  }
  const base = ok('manifests', `${names.length} file(s), ${objects} object(s) parse${ignored ? ` (${ignored} of kinds Wren does not read, ignored)` : ''}${warnings.length ? `; ${warnings.length} warning(s)` : ''}`);
  return warnings.length ? { ...base, details: warnings } : base;
}
