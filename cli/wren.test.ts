import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

const WREN = join(import.meta.dirname, '..', 'dist', 'cli', 'wren.js');

function wren(...args: string[]): { code: number; err: string } {
  try {
    execFileSync(process.execPath, [WREN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    return { code: 0, err: '' };
  } catch (e) {
    const x = e as { status: number; stderr: Buffer };
    return { code: x.status, err: x.stderr.toString() };
  }
}

test("an unknown command, including a name every object has (constructor, toString), is refused with the usage, exit 2", () => {
  for (const name of ['frobnicate', 'constructor', 'toString']) {
    const r = wren(name);
    expect([name, r.code, r.err.includes(`unknown command '${name}'`)]).toEqual([name, 2, true]);
  }
});
