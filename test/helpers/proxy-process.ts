import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestPki } from './pki.js';
import { SIDECAR_NODE_FLAGS } from '../../cli/heap-flags.js';

const root = join(import.meta.dirname, '..', '..');
const wren = join(root, 'dist', 'cli', 'wren.js');

/** A `wren proxy` in its own process (the built CLI), so its memory is its own: /proc/<pid>. */
export interface ProxyProcess {
  readonly pid: number;
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly adminPort: number;
  readonly spiffeId: string;
  /** Resident set size, MB (VmRSS). */
  rssMb(): number;
  /** Sends `signal` to the sidecar process. */
  kill(signal: NodeJS.Signals): void;
  /** Resolves when the process has exited: its exit code, or the signal that ended it. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  close(): Promise<void>;
}

/** The built CLI (`dist/cli/wren.js`). */
export const builtWren = wren;

/**
 * Fails early when dist/ is missing or older than the proxy's sources (the test would run
 * old code); `also`: more sources (repository paths) the test depends on.
 */
export function assertBuilt(also: readonly string[] = []): void {
  if (!existsSync(wren)) throw new Error(`${wren} is missing: run \`npm run build\` first`);
  for (const f of ['proxy/proxy.ts', 'proxy/http/h2-forward.ts', 'proxy/outbound/peer-pool.ts', 'proxy/config/proxy-config.ts', ...also]) {
    const js = join(root, 'dist', f.replace(/\.ts$/, '.js'));
    if (statSync(join(root, f)).mtimeMs > statSync(js).mtimeMs) throw new Error(`${js} is older than ${f}: run \`npm run build\` first`);
  }
}

/**
 * Starts `wren proxy` with certificate files issued by `pki`, every listener on port 0,
 * `config` merged over that (same spelling as the YAML file).
 */
/** Writes `key.pem`, `cert.pem` and `bundle.pem` of a certificate `pki` issues to default/`serviceAccount` into `dir`. */
export async function writeWorkloadFiles(pki: TestPki, dir: string, serviceAccount: string): Promise<void> {
  const m = pki.issue('default', serviceAccount);
  await Promise.all([writeFile(join(dir, 'key.pem'), m.keyPem), writeFile(join(dir, 'cert.pem'), m.certChainPem), writeFile(join(dir, 'bundle.pem'), m.trustBundlePem)]);
}

export async function startProxyProcess(
  pki: TestPki,
  dir: string,
  serviceAccount: string,
  config: Record<string, unknown> = {},
  nodeArgs: readonly string[] = [],
  onOutput?: (text: string) => void,
  /** The child's environment (default: the runner's own; a test's process.env is its sandbox's copy, which a child does not get). */
  env?: NodeJS.ProcessEnv,
): Promise<ProxyProcess> {
  const m = pki.issue('default', serviceAccount);
  const f = (n: string) => join(dir, `${serviceAccount}-${n}`);
  await Promise.all([writeFile(f('key.pem'), m.keyPem), writeFile(f('cert.pem'), m.certChainPem), writeFile(f('bundle.pem'), m.trustBundlePem)]);
  const file = f('proxy.json');
  await writeFile(
    file,
    JSON.stringify({
      identity: { namespace: 'default', serviceAccount, trustDomain: pki.trustDomain },
      tls: { certFile: f('cert.pem'), keyFile: f('key.pem'), trustBundleFile: f('bundle.pem') },
      listeners: { outbound: { address: '127.0.0.1', ipv6Address: '', port: 0 }, inbound: { address: '127.0.0.1', ipv6Address: '', port: 0 }, admin: { address: '127.0.0.1', port: 0 }, metrics: { address: '127.0.0.1', ipv6Address: '', port: 0 } },
      // No minimum drain unless a test asks (its own shutdown replaces this): a SIGTERM'd sidecar exits as soon as it is idle.
      shutdown: { gracePeriodMs: 500, minDrainMs: 0 },
      // WREN_TEST_APP_HTTP2 as in helpers/proxy.ts (a test's own protocol settings still win).
      ...(process.env['WREN_TEST_APP_HTTP2'] ? { protocol: { appHttp2: process.env['WREN_TEST_APP_HTTP2'], outboundHttp2: process.env['WREN_TEST_APP_HTTP2'] } } : {}),
      ...config,
    }),
  );
  const child: ChildProcess = spawn(process.execPath, [...SIDECAR_NODE_FLAGS, ...nodeArgs, wren, 'proxy', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env } : {}) });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  let out = '';
  const ports = await new Promise<number[]>((resolve, reject) => {
    const started = /"msg":"proxy started".*?"outbound":(\d+),"inbound":(\d+),"admin":(\d+)/;
    const onData = (d: Buffer) => {
      if (out.length < 1 << 16) out += d;
      const hit = started.exec(out);
      if (hit) resolve([Number(hit[1]), Number(hit[2]), Number(hit[3])]);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    if (onOutput) {
      child.stdout!.setEncoding('latin1').on('data', onOutput);
      child.stderr!.setEncoding('latin1').on('data', onOutput);
    }
    child.once('exit', (code) => reject(new Error(`wren proxy exited with ${code}: ${out.slice(-1000)}`)));
  });
  return {
    pid: child.pid!,
    outboundPort: ports[0],
    inboundPort: ports[1],
    adminPort: ports[2],
    spiffeId: m.spiffeId,
    rssMb: () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024,
    kill: (signal) => void child.kill(signal),
    exited,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}
