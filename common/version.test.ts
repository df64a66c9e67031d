import { readFileSync } from 'node:fs';
import { WREN_VERSION } from './version.js';

test('WREN_VERSION is package.json version (one release number)', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  expect(WREN_VERSION).toBe(pkg.version);
});
