import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SIDECAR_NODE_FLAGS } from '../cli/heap-flags.js';

/**
 * The node flags a sidecar needs at start-up (cli/heap-flags.ts SIDECAR_NODE_FLAGS: V8 reads
 * the young generation's cap only then) are given by the image, which is what the injected
 * container runs (control-plane/injector/sidecar.ts sets args, not command). The benchmarks,
 * `wren demo` and the tests' proxy processes import the constant; the Dockerfile cannot.
 */
test("the image's ENTRYPOINT gives node the sidecar's launcher flags", () => {
  const dockerfile = readFileSync(join(import.meta.dirname, '..', 'Dockerfile'), 'utf8');
  const line = dockerfile.split('\n').find((l) => l.startsWith('ENTRYPOINT '));
  expect(line).toBeDefined();
  const argv = JSON.parse(line!.slice('ENTRYPOINT '.length)) as string[];
  expect(argv).toEqual(['node', ...SIDECAR_NODE_FLAGS, '/app/dist/cli/wren.js']);
});
