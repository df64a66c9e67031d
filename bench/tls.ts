/**
 * TLS cost benchmark (issue: identity and policy, security checks):
 *  - full mutual-TLS handshakes per second against a Wren sidecar's inbound port, with a
 *    bare node:https server using the same certificate, suites and client-certificate
 *    check as the baseline (the limit: Wren adds nothing to a handshake but its config);
 *  - certificate signings per second by the CA (CSR in, chain out) and workload key
 *    generations per second (each rotation makes a new key).
 * No session resumption: every connection is a full handshake. A TLS 1.3 handshake is
 * counted when the client has the server's session ticket, which the server sends only
 * after it has verified the client's certificate and Finished.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type SecureVersion } from 'node:tls';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import { CertificateAuthority, createCsr, createRootCa, generateKeyPair, writeDevMesh } from '../certs/index.js';
import { median } from './interleave.js';
import { startNode } from './node-process.js';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const procs: ChildProcess[] = [];

const start = async (args: string[], ready: RegExp) => (await startNode(procs, args, ready)).match;

interface Material { ca: string; cert: string; key: string }

function handshake(port: number, m: Material, version: SecureVersion): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca: m.ca, cert: m.cert, key: m.key, minVersion: version, maxVersion: version, ALPNProtocols: ['h2', 'http/1.1'], checkServerIdentity: () => undefined });
    const done = () => {
      s.destroy();
      resolve();
    };
    if (version === 'TLSv1.3') s.once('session', done);
    else s.once('secureConnect', done);
    s.once('error', reject);
  });
}

async function rate(n: number, concurrency: number, one: () => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next++ < n) await one();
  }));
  return n / ((performance.now() - t0) / 1000);
}


export async function runTlsBench(opts: { handshakes?: number; runs?: number } = {}): Promise<Record<string, unknown>> {
  const n = opts.handshakes ?? 400;
  const runs = opts.runs ?? 3;
  const dir = await mkdtemp(join(tmpdir(), 'wren-bench-tls-'));
  const pki = await writeDevMesh(join(dir, 'pki'), { trustDomain: 'cluster.local', workloads: [{ namespace: 'default', serviceAccount: 'client', name: 'client' }, { namespace: 'default', serviceAccount: 'web', name: 'web' }] });
  const w = Object.fromEntries(pki.workloads.map((x) => [x.name, x]));
  try {
    const cfg = join(dir, 'web.yaml');
    await writeFile(cfg, stringify({
      identity: { namespace: 'default', serviceAccount: 'web' },
      tls: { certFile: w.web.certFile, keyFile: w.web.keyFile, trustBundleFile: pki.caCertFile },
      listeners: { outbound: { address: '127.0.0.1', port: 0 }, inbound: { address: '127.0.0.1', port: 0 }, admin: { address: '127.0.0.1', port: 0 }, metrics: { address: '127.0.0.1', ipv6Address: '', port: 0 } },
      log: { level: 'info' },
      mesh: { services: [] },
    }));
    const wren = await start([here('../cli/wren.js'), 'proxy', '--config', cfg], /"msg":"proxy started".*?"inbound":(\d+)/);
    // The naive inbound half (node:https, requestCert) is the bare-TLS baseline; its app port is never reached.
    const bare = await start([here('./naive-pair.js'), 'inbound', '1', w.web.certFile, w.web.keyFile, pki.caCertFile], /ready (\d+)/);
    const m: Material = { ca: await readFile(pki.caCertFile, 'utf8'), cert: await readFile(w.client.certFile, 'utf8'), key: await readFile(w.client.keyFile, 'utf8') };
    const rows: { scenario: string; wren: number; bare: number; ratio: number }[] = [];
    for (const version of ['TLSv1.3', 'TLSv1.2'] as const)
      for (const c of [1, 16]) {
        const wr: number[] = [];
        const br: number[] = [];
        for (let i = 0; i < runs; i++) {
          br.push(await rate(n, c, () => handshake(Number(bare[1]), m, version)));
          wr.push(await rate(n, c, () => handshake(Number(wren[1]), m, version)));
        }
        rows.push({ scenario: `${version}, ${c} at a time`, wren: median(wr), bare: median(br), ratio: median(wr) / median(br) });
      }
    // CA signing: CSRs made up front so only issue() is timed.
    const root = createRootCa({ trustDomain: 'cluster.local' });
    const ca = new CertificateAuthority({ certPem: root.certPem, keyPem: root.keyPem, trustDomain: 'cluster.local' });
    const csrs = Array.from({ length: 50 }, (_, i) => {
      const k = generateKeyPair();
      return createCsr(k.privateKeyPem, `spiffe://cluster.local/ns/default/sa/sa-${i}`);
    });
    const signs: number[] = [];
    for (let r = 0; r < runs; r++) {
      const t0 = performance.now();
      for (let i = 0; i < csrs.length; i++) ca.issue(csrs[i], { identity: `spiffe://cluster.local/ns/default/sa/sa-${i}` });
      signs.push(csrs.length / ((performance.now() - t0) / 1000));
    }
    const keys: number[] = [];
    for (let r = 0; r < runs; r++) {
      const t0 = performance.now();
      for (let i = 0; i < 10; i++) generateKeyPair();
      keys.push(10 / ((performance.now() - t0) / 1000));
    }
    console.log('\n== TLS (full mTLS handshakes/s, median of', runs, 'runs of', n, '; baseline: bare node:https with the same certificate) ==');
    console.log('scenario'.padEnd(24), 'wren'.padStart(8), 'bare'.padStart(8), 'ratio'.padStart(7));
    for (const r of rows) console.log(r.scenario.padEnd(24), r.wren.toFixed(0).padStart(8), r.bare.toFixed(0).padStart(8), r.ratio.toFixed(2).padStart(7));
    console.log(`CA signings/s (CSR -> chain, RSA 2048): ${median(signs).toFixed(0)}; workload key generations/s (RSA 2048): ${median(keys).toFixed(1)}`);
    return { handshakes: rows, signsPerSecond: median(signs), keyGenerationsPerSecond: median(keys) };
  } finally {
    for (const p of procs) p.kill('SIGKILL');
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runTlsBench().then(() => process.exit(0), (e) => {
    console.error(e);
    process.exit(1);
  });
}
