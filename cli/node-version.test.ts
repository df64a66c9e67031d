import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MIN_NODE_MAJOR, nodeVersionProblem } from './node-version.js';

describe('nodeVersionProblem', () => {
  it('accepts Node.js 24 and later', () => {
    expect(nodeVersionProblem('24.0.0')).toBeNull();
    expect(nodeVersionProblem('24.21.0')).toBeNull();
    expect(nodeVersionProblem('25.1.3')).toBeNull();
    expect(nodeVersionProblem(process.versions.node)).toBeNull();
  });

  it('refuses older ones, naming the version and how to get the right one', () => {
    for (const v of ['20.20.2', '22.12.0', '23.11.1', '4.9.1']) {
      const msg = nodeVersionProblem(v);
      expect(msg).toContain(`Node.js ${MIN_NODE_MAJOR} or later is needed, this is ${v}`);
      expect(msg).toContain('node_modules/.bin/node');
    }
  });

  it("is package.json's engines bound, the one npm states", () => {
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { engines: { node: string } };
    expect(pkg.engines.node).toBe(`>=${MIN_NODE_MAJOR}`);
  });

  it('refuses a version it cannot read', () => {
    expect(nodeVersionProblem('')).not.toBeNull();
    expect(nodeVersionProblem('v24')).not.toBeNull();
  });
});
