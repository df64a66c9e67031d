/**
 * `npm run bench`: every benchmark in one run, each printing its figures and its ratio
 * against a baseline measured in the same run. `npm run bench -- data-path` (or
 * `resilience`, `control-plane`, `tls`, `identity`, `soak`, `h1-codec`, `header-map`, `socket-reads`) runs one. Figures are medians/percentiles of one run on
 * a noisy machine: compare ratios, not absolute numbers.
 */
import { writeFile } from 'node:fs/promises';

/**
 * Each benchmark is imported only when it runs: one benchmark's dependencies failing to
 * load (the control-plane benchmark's undici 8 needs Node 22's zlib zstd) must not stop
 * the others.
 */
const all: Record<string, () => Promise<Record<string, unknown>>> = {
  'data-path': async () => (await import('./data-path.js')).runDataPathBench(),
  resilience: async () => (await import('./resilience.js')).runResilienceBench(),
  'control-plane': async () => (await import('./control-plane.js')).runControlPlaneBench(),
  tls: async () => (await import('./tls.js')).runTlsBench(),
  identity: async () => (await import('./identity.js')).runIdentityBench(),
  soak: async () => (await import('./soak.js')).runSoakBench(),
  'h1-codec': async () => (await import('./h1-codec.js')).runH1CodecBench(),
  'header-map': async () => (await import('./header-map.js')).runHeaderMapBench(),
  'socket-reads': async () => (await import('./socket-reads.js')).runSocketReadsBench(),
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
