import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import { testPki } from './helpers/pki.js';
import { assertBuilt, startProxyProcess } from './helpers/proxy-process.js';
import { otlpReceiver, type OtlpReceiver } from './helpers/otlp-receiver.js';

/**
 * Issue 12 (resident memory): a sidecar loads the optional packages only for the features
 * configured (docs/benchmarks.md, "Resident memory"). Each case starts the built
 * `wren proxy` with a module hook (node:module registerHooks, given with --import) that
 * writes every package a module is loaded from, ESM or require(), to a file.
 */
const pki = testPki();
let dir: string;
let receiver: OtlpReceiver;

beforeAll(async () => {
  assertBuilt();
  dir = await mkdtemp(join(tmpdir(), 'wren-loads-'));
  receiver = await otlpReceiver();
});

afterAll(async () => {
  await receiver.close();
  await rm(dir, { recursive: true, force: true });
});

/** The packages `wren proxy` with `config` has loaded once it has started (and `settleMs` later). */
async function loadedPackages(name: string, config: Record<string, unknown>, settleMs = 0): Promise<Set<string>> {
  const file = join(dir, `${name}.loads`);
  await writeFile(file, '');
  const hook = `import { registerHooks } from 'node:module'; import { appendFileSync } from 'node:fs';
registerHooks({ load(url, context, next) {
  const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(url);
  if (m) appendFileSync(${JSON.stringify(file)}, m[1] + '\\n');
  return next(url, context);
} });
process.on('exit', () => appendFileSync(${JSON.stringify(file)}, 'exit ' + process.moduleLoadList.filter((m) => m.includes('undici')).join(',') + '\\n'));`;
  const p = await startProxyProcess(pki, dir, name, config, [`--import=data:text/javascript,${encodeURIComponent(hook)}`]);
  if (settleMs) await new Promise((r) => setTimeout(r, settleMs));
  // Read after the process has exited: its exit handler names the Node internals it loaded.
  await p.close();
  return new Set(readFileSync(file, 'utf8').split('\n').filter(Boolean));
}

const TRACING = ['@opentelemetry/api', '@opentelemetry/sdk-trace-base', '@opentelemetry/exporter-trace-otlp-grpc', '@opentelemetry/semantic-conventions', '@opentelemetry/sdk-metrics'];

test('a sidecar on a file config without a collector or a JWT rule loads neither the tracing SDK, grpc-js nor jose', async () => {
  const loaded = await loadedPackages('plain', {});
  expect(loaded).toContain('prom-client'); // the hook sees require() and import alike
  expect(loaded).toContain('yaml');
  for (const pkg of [...TRACING, '@grpc/grpc-js', 'jose']) expect([pkg, loaded.has(pkg)]).toEqual([pkg, false]);
  // Node's bundled undici (fetch, WebSocket) neither: an ES-module import of node:http
  // loads it, 1-7 MB of private memory for nothing (common/node-http.ts).
  expect(loaded).toContain('exit '); // the process exited through its exit handler, which lists them
}, 30_000);

test('with a collector the tracing SDK and the OTLP exporter are loaded (before the proxy starts), jose still not', async () => {
  const loaded = await loadedPackages('traced', { tracing: { collector: { address: receiver.address, plaintext: true } } });
  for (const pkg of ['@opentelemetry/sdk-trace-base', '@opentelemetry/exporter-trace-otlp-grpc', '@grpc/grpc-js']) expect([pkg, loaded.has(pkg)]).toEqual([pkg, true]);
  expect(loaded.has('jose')).toBe(false);
}, 30_000);

test('a JWT rule in the policy loads jose, the tracing SDK stays out', async () => {
  const kp = await generateKeyPair('ES256', { extractable: true });
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(kp.publicKey)), kid: 'k1', alg: 'ES256' }] });
  const loaded = await loadedPackages('jwt', { policy: { jwtRules: [{ issuer: 'https://issuer.example.com', jwks }] } }, 500);
  expect(loaded.has('jose')).toBe(true);
  expect(loaded.has('@opentelemetry/sdk-trace-base')).toBe(false);
}, 30_000);
