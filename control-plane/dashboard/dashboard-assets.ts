import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * The dashboard's static files (control-plane/dashboard/static: plain HTML, CSS and one
 * small script, no library, no CDN), served by the control plane's admin port under
 * /dashboard/. They sit beside this module in the repository; from dist/ they are three
 * levels up (the image copies them, see the Dockerfile). Read once, on first use.
 *
 * Beside them, modules the page shares with the CLI, compiled from common/: retry-after.js
 * is common/http-retry-after.ts (Retry-After read strictly, RFC 9110 section 10.2.3), which
 * imports nothing, so its JavaScript is an ES module the browser loads as it is.
 */
const FILES: Readonly<Record<string, string>> = {
  'index.html': 'text/html; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
};
const SHARED: Readonly<Record<string, string>> = { 'retry-after.js': 'http-retry-after' };

let cache: Map<string, Buffer> | undefined;

function dir(): string {
  const candidates = ['./static/', '../../../control-plane/dashboard/static/'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const found = candidates.find((p) => existsSync(`${p}index.html`));
  if (!found) throw new Error(`dashboard files not found (looked in ${candidates.join(', ')})`);
  return found;
}

/**
 * The JavaScript of common/NAME.ts: the compiled file tsc put beside this one's in dist/
 * (its source-map comment dropped: the map is not served); run from the TypeScript sources
 * (the tests, under ts-jest) there is none, and the source is transpiled as ts-jest does.
 */
function sharedModule(name: string): Buffer {
  const compiled = fileURLToPath(new URL(`../../common/${name}.js`, import.meta.url));
  if (existsSync(compiled)) return Buffer.from(readFileSync(compiled, 'utf8').replace(/\n\/\/# sourceMappingURL=\S*\s*$/, '\n'));
  const source = readFileSync(fileURLToPath(new URL(`../../common/${name}.ts`, import.meta.url)), 'utf8');
  const ts = createRequire(import.meta.url)('typescript') as typeof import('typescript');
  return Buffer.from(ts.transpileModule(source, { compilerOptions: { target: ts.ScriptTarget.ES2023, module: ts.ModuleKind.ESNext } }).outputText);
}

/** The file for a /dashboard/ path ('' and '/' are index.html), or null for anything else. */
export function dashboardAsset(path: string): { contentType: string; body: Buffer } | null {
  const name = path === '/dashboard/' || path === '/dashboard' ? 'index.html' : path.slice('/dashboard/'.length);
  // Own names only: /dashboard/constructor is no file (FILES['constructor'] is Object's).
  const contentType = Object.hasOwn(FILES, name) ? FILES[name] : Object.hasOwn(SHARED, name) ? 'text/javascript; charset=utf-8' : undefined;
  if (!contentType) return null;
  if (!cache) {
    const d = dir();
    cache = new Map([...Object.keys(FILES).map((f): [string, Buffer] => [f, readFileSync(d + f)]), ...Object.entries(SHARED).map(([f, m]): [string, Buffer] => [f, sharedModule(m)])]);
  }
  return { contentType, body: cache.get(name)! };
}
