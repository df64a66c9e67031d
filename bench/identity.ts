/**
 * Identity benchmark: how fast the CA signs (CertificateAuthority.issue on pre-made
 * CSRs), how many Certify round trips per second one control plane serves over real
 * TLS gRPC on loopback (bootstrap-token authenticator, so no API server in the loop),
 * and what one renewal costs a proxy (key generation + CSR). Medians of several runs.
 * Run: `npm run build && node dist/bench/identity.js`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCsr, generateKeyPair, generateKeyPairAsync } from '../certs/index.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { controlPlaneSpiffeId } from '../contract/identity.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { generateIssuer } from '../control-plane/identity/issuer.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { CertifyClient } from '../proxy/identity/certify-client.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials } from '../proxy/identity/control-plane-credentials.js';
import { median } from './interleave.js';

const TD = 'cluster.local';
const ID = `spiffe://${TD}/ns/bench/sa/web`;
const TOKEN = 'bench-bootstrap-token-0123456789';

export async function runIdentityBench(opts: { runs?: number; signs?: number; calls?: number; print?: (l: string) => void } = {}): Promise<Record<string, unknown>> {
  const print = opts.print ?? ((l: string) => console.log(l));
  const runs = opts.runs ?? 5;
  const signs = opts.signs ?? 200;
  const calls = opts.calls ?? 200;
  const issuer = generateIssuer(TD);
  const csrs = Array.from({ length: 8 }, () => createCsr(generateKeyPair().privateKeyPem, ID));

  const signRates: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    for (let i = 0; i < signs; i++) issuer.ca.issue(csrs[i % csrs.length], { identity: ID });
    signRates.push(signs / ((performance.now() - t0) / 1000));
  }

  const keygenMs: number[] = [];
  for (let r = 0; r < 10; r++) {
    const t0 = performance.now();
    createCsr((await generateKeyPairAsync()).privateKeyPem, ID);
    keygenMs.push(performance.now() - t0);
  }

  const dir = await mkdtemp(join(tmpdir(), 'wren-bench-id-'));
  await writeFile(join(dir, 'tokens.yaml'), `tokens:\n  - { token: ${TOKEN}, namespace: bench, serviceAccount: web }\n`);
  const cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(1), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir }),
    identity: { issuer, authenticator: BootstrapTokenAuthenticator.fromFile(join(dir, 'tokens.yaml')) },
    transport: 'tls',
  });
  const client = new CertifyClient(`127.0.0.1:${cp.grpcPort}`, controlPlaneCredentials(issuer.trustBundlePem, controlPlaneSpiffeId(TD)), CONTROL_PLANE_CHANNEL_OPTIONS);
  const call = (i: number) => client.certify({ identity: ID, token: Buffer.from(TOKEN), csrPem: csrs[i % csrs.length], requestedLifetimeMs: 0 }, 10_000);
  await call(0);
  const rtt: Record<string, number[]> = { 1: [], 16: [] };
  for (let r = 0; r < runs; r++) {
    for (const conc of [1, 16]) {
      let next = 0;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: conc }, async () => {
        while (next < calls) await call(next++);
      }));
      rtt[conc].push(calls / ((performance.now() - t0) / 1000));
    }
  }
  client.close();
  await cp.kill();
  await rm(dir, { recursive: true, force: true });

  const result = {
    caIssuePerSecond: Math.round(median(signRates)),
    certifyPerSecondSequential: Math.round(median(rtt[1])),
    certifyPerSecondConcurrency16: Math.round(median(rtt[16])),
    proxyKeyAndCsrMs: Number(median(keygenMs).toFixed(1)),
    runs,
  };
  print(`CertificateAuthority.issue: ${result.caIssuePerSecond} signs/s (median of ${runs} runs of ${signs}; RSA 2048 via node:crypto)`);
  print(`Certify over TLS gRPC, bootstrap tokens: ${result.certifyPerSecondSequential} round trips/s sequential, ${result.certifyPerSecondConcurrency16} with 16 in flight (median of ${runs} runs of ${calls})`);
  print(`proxy side of one renewal: RSA 2048 key (thread pool) + CSR: ${result.proxyKeyAndCsrMs} ms median`);
  return result;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  void runIdentityBench().then(() => process.exit(0));
}
