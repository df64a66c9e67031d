/**
 * `wren` on a Node.js older than 24 (package.json `engines`) stops at once with a message
 * that says so (cli/node-version.ts), instead of starting a sidecar whose HTTP/2 between
 * sidecars fails every call. Run with the older node a fresh Debian machine has
 * (/usr/bin/node, Node 20 as the README's machine comes); the same command under the
 * project's node 24 runs, so the check cannot pass by refusing everything.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MIN_NODE_MAJOR } from '../cli/node-version.js';

const WREN = join(process.cwd(), 'dist', 'cli', 'wren.js');

/** The first `node` on PATH, or in /usr/bin or /usr/local/bin, older than MIN_NODE_MAJOR; null if none. */
function olderNode(): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/bin', '/usr/local/bin'];
  for (const d of dirs) {
    const bin = join(d, 'node');
    if (!d || !existsSync(bin)) continue;
    try {
      const v = execFileSync(bin, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim();
      if (Number(v.split('.')[0]) < MIN_NODE_MAJOR) return bin;
    } catch {
      continue;
    }
  }
  return null;
}

const older = olderNode();
if (older === null) process.stderr.write(`\n! test/node-version-cli.test.ts: SKIPPED: no node older than ${MIN_NODE_MAJOR} on this machine\n`);
const maybe = older === null ? describe.skip : describe;

maybe('wren on an older Node.js', () => {
  it('exits 1 naming the version needed, before any command runs', () => {
    const r = spawnSync(older!, [WREN, 'proxy', '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`Node\\.js ${MIN_NODE_MAJOR} or later is needed, this is \\d+\\.`));
    expect(r.stdout).toBe('');
  });

  it('the test runner refuses to start under it, with the same reason', () => {
    const r = spawnSync(older!, [join(process.cwd(), 'node_modules', 'jest', 'bin', 'jest.js'), '--listTests'], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`the tests need Node\\.js ${MIN_NODE_MAJOR} or later, this is \\d+\\.`));
  });

  it("the same command runs under the project's node", () => {
    const r = spawnSync(process.execPath, [WREN, 'proxy', '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Usage: wren proxy/);
  });
});
