// Builds the SO_ORIGINAL_DST addon with the system C compiler against Node-API headers
// from the node-api-headers package (no node-gyp, no header download). The proxy runs
// without it (Host-based routing only) and says so in its log, so a missing compiler
// is a warning here, not a failure.
import { execFileSync } from 'node:child_process';
import { mkdirSync, copyFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const require = createRequire(import.meta.url);
const include = require('node-api-headers').include_dir;
const out = join(here, 'build', 'original-dst.node');
mkdirSync(dirname(out), { recursive: true });
try {
  execFileSync(process.env.CC ?? 'cc', ['-shared', '-fPIC', '-O2', '-Wall', '-I', include,
    join(here, 'original-dst.c'), '-o', out], { stdio: 'inherit' });
  const distOut = join(root, 'dist', 'proxy', 'native', 'build', 'original-dst.node');
  mkdirSync(dirname(distOut), { recursive: true });
  copyFileSync(out, distOut);
  console.log(`built ${out}`);
} catch (err) {
  console.warn(`warning: could not build the SO_ORIGINAL_DST addon (${err.message}); ` +
    'transparent interception will route by Host header only');
}
