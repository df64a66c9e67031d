import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

/**
 * Every error the proxy answers goes through the one table (proxy-error.ts) and its one
 * mapping (error-response.ts: errorResponse, tunnelRefusal): a response built by hand
 * would drift from the table's status, label and response flag. This scans the proxy's
 * sources for the shapes a hand-built error response takes.
 */
const ROOT = join(import.meta.dirname, '..');

const SHAPES: readonly [string, RegExp][] = [
  ['a wren-proxy-error header written by name', /['"`]wren-proxy-error['"`]/],
  ['a hand-built HTTP/1.1 error status line', /HTTP\/1\.1 (?:[45]\d\d|\$\{[^}]*httpStatus)/],
  ['an HTTP/2 error status set by hand', /':status':\s*[45]\d\d/],
];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return name === 'native' ? [] : sources(p);
    return p.endsWith('.ts') && !p.endsWith('.test.ts') ? [p] : [];
  });
}

test('no proxy source builds an error response by hand (outside proxy/errors)', () => {
  const found: string[] = [];
  for (const file of sources(ROOT)) {
    const rel = relative(ROOT, file);
    if (rel.startsWith('errors/')) continue;
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        for (const [what, re] of SHAPES) if (re.test(line)) found.push(`${rel}:${i + 1}: ${what}`);
      });
  }
  expect(found).toEqual([]);
});

test('the scan sees the shapes it looks for', () => {
  const lines = [`stream.respond({ ':status': 502, 'wren-proxy-error': 'connect-refused' })`, 'socket.end(`HTTP/1.1 ${e.httpStatus} Bad Request`)', "'HTTP/1.1 400 Bad Request'"];
  for (const line of lines) expect(SHAPES.some(([, re]) => re.test(line))).toBe(true);
});
