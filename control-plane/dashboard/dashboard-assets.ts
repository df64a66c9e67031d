import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The dashboard's static files (control-plane/dashboard/static: plain HTML, CSS and one
 * small script, no library, no CDN), served by the control plane's admin port under
 * /dashboard/. They sit beside this module in the repository; from dist/ they are three
 * levels up (the image copies them, see the Dockerfile). Read once, on first use.
 */
const FILES: Readonly<Record<string, string>> = {
  'index.html': 'text/html; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
};

let cache: Map<string, Buffer> | undefined;

function dir(): string {
  const candidates = ['./static/', '../../../control-plane/dashboard/static/'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const found = candidates.find((p) => existsSync(`${p}index.html`));
  if (!found) throw new Error(`dashboard files not found (looked in ${candidates.join(', ')})`);
  return found;
}

/** The file for a /dashboard/ path ('' and '/' are index.html), or null for anything else. */
export function dashboardAsset(path: string): { contentType: string; body: Buffer } | null {
  const name = path === '/dashboard/' || path === '/dashboard' ? 'index.html' : path.slice('/dashboard/'.length);
  const contentType = FILES[name];
  if (!contentType) return null;
  if (!cache) {
    const d = dir();
    cache = new Map(Object.keys(FILES).map((f) => [f, readFileSync(d + f)]));
  }
  return { contentType, body: cache.get(name)! };
}
