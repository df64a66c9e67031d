/**
 * `npm run bench`: every benchmark in one run, each printing its figures and its ratio
 * against a baseline measured in the same run. `npm run bench -- data-path` (or
 * `resilience`, `control-plane`, `tls`, `identity`, `soak`, `h1-codec`) runs one. Figures are medians/percentiles of one run on
 * a noisy machine: compare ratios, not absolute numbers.
 */
import { writeFile } from 'node:fs/promises';
import { runDataPathBench } from './data-path.js';
import { runResilienceBench } from './resilience.js';
import { runControlPlaneBench } from './control-plane.js';
import { runTlsBench } from './tls.js';
import { runIdentityBench } from './identity.js';
import { runSoakBench } from './soak.js';
import { runH1CodecBench } from './h1-codec.js';

const all: Record<string, () => Promise<Record<string, unknown>>> = {
  'data-path': () => runDataPathBench(),
  resilience: () => runResilienceBench(),
  'control-plane': () => runControlPlaneBench(),
  tls: () => runTlsBench(),
  identity: () => runIdentityBench(),
  soak: () => runSoakBench(),
  'h1-codec': () => runH1CodecBench(),
};

const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const results: Record<string, unknown> = {};
// The soak runs only when named (10 minutes by default).
for (const name of wanted.length ? wanted : Object.keys(all).filter((n) => n !== 'soak')) {
  const run = all[name];
  if (!run) {
    console.error(`unknown benchmark '${name}'; choose from ${Object.keys(all).join(', ')}`);
    process.exit(2);
  }
  console.log(`\n##### ${name}`);
  results[name] = await run();
}
await writeFile('bench-results.json', JSON.stringify(results, null, 2));
console.log('\nfigures written to bench-results.json');
process.exit(0);
