// The system tools the tests need, and the Debian packages that bring them: the ONE
// list (add a row here when a test needs a new tool). Run first by `npm test`:
//
//   - every tool present: one line, nothing else;
//   - some missing, running as root on Debian (apt-get): `apt-get update` then
//     `apt-get install -y --no-install-recommends` of exactly the missing packages;
//   - some missing and it cannot install them (not root, no apt-get, apt-get failed):
//     it prints what is missing and the command that installs it, and exits 0; the
//     tests that need a missing tool are reported as skipped, with that reason
//     (test/helpers/prerequisites.ts reads this table).
//
// Plain Node (no dependencies, no TypeScript) so it runs on the machine's own Node
// (20 or 24) before anything is built. `--check` only reports, never installs.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * One row per tool (a program on PATH) or file (`file:` + absolute path) a test needs.
 * `pkg` is the Debian package that installs it; `for` says which tests need it.
 * @type {readonly { readonly need: string; readonly pkg: string; readonly for: string }[]}
 */
export const PREREQUISITES = Object.freeze([
  // Network-namespace tests (test/iptables-netns.test.ts, test/pod-netns-e2e.test.ts).
  { need: 'ip', pkg: 'iproute2', for: 'network-namespace tests' },
  { need: 'iptables', pkg: 'iptables', for: 'network-namespace tests' },
  { need: 'iptables-save', pkg: 'iptables', for: 'network-namespace tests' },
  { need: 'iptables-restore', pkg: 'iptables', for: 'network-namespace tests' },
  { need: 'iptables-nft-save', pkg: 'iptables', for: 'network-namespace tests' },
  { need: 'iptables-legacy-save', pkg: 'iptables', for: 'network-namespace tests' },
  { need: 'ip6tables', pkg: 'iptables', for: 'network-namespace tests (IPv6)' },
  { need: 'ip6tables-save', pkg: 'iptables', for: 'network-namespace tests (IPv6)' },
  { need: 'ip6tables-restore', pkg: 'iptables', for: 'network-namespace tests (IPv6)' },
  { need: 'tcpdump', pkg: 'tcpdump', for: 'pod network-namespace test (what crosses the wire)' },
  { need: 'setpriv', pkg: 'util-linux', for: 'network-namespace tests (processes under other UIDs)' },
  { need: 'unshare', pkg: 'util-linux', for: 'pod network-namespace test (container volumes)' },
  { need: 'mount', pkg: 'mount', for: 'pod network-namespace test (container volumes)' },
  // The SO_ORIGINAL_DST addon (proxy/native/build.mjs): a C compiler and libc headers.
  { need: 'cc', pkg: 'gcc', for: 'the SO_ORIGINAL_DST native addon' },
  { need: 'file:/usr/include/stdio.h', pkg: 'libc6-dev', for: 'the SO_ORIGINAL_DST native addon' },
  // Certificates checked by a second implementation; webhook test certificates.
  { need: 'openssl', pkg: 'openssl', for: 'identity and injector webhook tests' },
  { need: 'curl', pkg: 'curl', for: 'HTTP/1.1 codec tests (a real client: pipelining, Expect: 100-continue)' },
  { need: 'nghttp', pkg: 'nghttp2-client', for: 'HTTP/2 refusal access-log test (a real HTTP/2 client sending a malformed head)' },
  { need: 'file:/etc/ssl/certs/ca-certificates.crt', pkg: 'ca-certificates', for: 'HTTPS clients' },
  // The manifests test builds the kustomization offline (client side only).
  { need: 'kubectl', pkg: 'kubernetes-client', for: 'manifests test (kubectl kustomize)' },
  // A real TCP client and server for opaque TCP through the mesh.
  { need: 'redis-server', pkg: 'redis-server', for: 'explicit-upstream TCP tests' },
  { need: 'redis-cli', pkg: 'redis-tools', for: 'explicit-upstream TCP tests' },
  // A real Prometheus scrapes sidecars and evaluates every dashboard query (test/dashboards-prometheus.test.ts).
  // The Debian package also installs a system service on :9090; the test starts its own on a free port.
  { need: 'prometheus', pkg: 'prometheus', for: 'dashboards test (a real Prometheus evaluates every dashboard query)' },
  // The control plane's web dashboard in a real headless browser, driven by puppeteer-core (test/dashboard-chromium.test.ts).
  { need: 'chromium', pkg: 'chromium', for: 'dashboard browser test (headless Chromium)' },
]);

const executable = (p) => {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};
const exists = (p) => {
  try {
    accessSync(p, constants.R_OK);
    return true;
  } catch {
    return false;
  }
};

/** True when `need` (a program name, or `file:` + paths separated by `|`) is there. */
export function present(need, path = process.env.PATH ?? '') {
  if (need.startsWith('file:')) return need.slice(5).split('|').some(exists);
  return path.split(delimiter).filter(Boolean).some((d) => executable(join(d, need)));
}

/** The rows whose `need` is missing (all rows, or only those for `needs`). */
export function missing(needs, path) {
  const rows = needs ? PREREQUISITES.filter((r) => needs.includes(r.need)) : PREREQUISITES;
  const unknown = needs?.filter((n) => !PREREQUISITES.some((r) => r.need === n)) ?? [];
  if (unknown.length) throw new Error(`scripts/test-prerequisites.mjs has no row for ${unknown.join(', ')}: add one`);
  return rows.filter((r) => !present(r.need, path));
}

const pkgs = (rows) => [...new Set(rows.map((r) => r.pkg))];
const label = (r) => (r.need.startsWith('file:') ? r.need.slice(5).split('|')[0] : r.need);

/** The command a person runs to install `rows` on Debian. */
export const installCommand = (rows) => `apt-get update && apt-get install -y --no-install-recommends ${pkgs(rows).join(' ')}`;

/** "iptables-save (iptables), tcpdump (tcpdump)": what is missing, and its package. */
export const describeMissing = (rows) => rows.map((r) => `${label(r)} (${r.pkg})`).join(', ');

function run(cmd, args) {
  process.stdout.write(`test prerequisites: ${cmd} ${args.join(' ')}\n`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return r.status === 0 && !r.error;
}

function main(argv) {
  const before = missing();
  if (before.length === 0) {
    console.log(`test prerequisites: all ${PREREQUISITES.length} present`);
    return 0;
  }
  console.log(`test prerequisites: missing ${describeMissing(before)}`);
  const root = process.getuid?.() === 0;
  const apt = present('apt-get');
  let why = '';
  if (argv.includes('--check')) why = '--check: not installing';
  else if (!apt) why = 'no apt-get here (not Debian)';
  else if (!root) why = 'not root';
  else if (!run('apt-get', ['update', '-qq']) || !run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs(before)])) why = 'apt-get failed (see above)';
  const after = missing();
  if (after.length === 0) {
    console.log(`test prerequisites: installed ${pkgs(before).join(' ')}`);
    return 0;
  }
  const bar = '!'.repeat(78);
  console.log(
    [
      bar,
      `! test prerequisites: still missing ${describeMissing(after)}`,
      `! (${why || 'the packages did not provide them'}). Install them as root with:`,
      `!   ${installCommand(after)}`,
      '! The tests that need them are reported as SKIPPED, with this reason.',
      bar,
    ].join('\n'),
  );
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main(process.argv.slice(2));
