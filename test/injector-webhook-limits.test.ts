/**
 * What a client that is not the API server can make the injector webhook hold. 15017 is
 * reachable from every pod and asks for no client certificate (as Istio's and Linkerd's
 * injectors), and the webhook runs inside the control plane next to identity and
 * discovery: before these bounds a pod could make it buffer 4 MiB per connection, on as
 * many connections as it liked, for Node's default 300 s request timeout, until the
 * control plane was OOM-killed (50 such connections were 200 MiB of buffers; the install
 * manifest's memory limit is 512 Mi). Real TLS sockets on port 0.
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { createInjectorServer, WEBHOOK_LIMITS, type WebhookLimits } from '../control-plane/injector/injector-server.js';
import { createLogger, silentLogger, type Logger } from '../common/logger.js';
import { callWebhook, WEBHOOK_HOST } from './helpers/webhook-client.js';

let dir: string;
let cert: string;
let key: string;
const servers: Server[] = [];
const sockets: TLSSocket[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'wren-webhook-limits-'));
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', `/CN=${WEBHOOK_HOST}`, '-addext', `subjectAltName=DNS:${WEBHOOK_HOST}`,
    '-keyout', join(dir, 'tls.key'), '-out', join(dir, 'tls.crt'),
  ], { stdio: 'pipe' });
  cert = readFileSync(join(dir, 'tls.crt'), 'utf8');
  key = readFileSync(join(dir, 'tls.key'), 'utf8');
});

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => {
    s.close(r);
    s.closeAllConnections();
  })));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function start(limits?: Partial<WebhookLimits>, logger: Logger = silentLogger): Promise<number> {
  const s = createInjectorServer({ tls: { cert, key }, port: 0, host: '127.0.0.1', logger, ...(limits ? { limits } : {}) });
  servers.push(s);
  await once(s, 'listening');
  return (s.address() as AddressInfo).port;
}

async function open(port: number): Promise<TLSSocket> {
  const t = connect({ host: '127.0.0.1', port, ca: cert, servername: WEBHOOK_HOST });
  sockets.push(t);
  await once(t, 'secureConnect');
  return t;
}

/** What came back on `t` (its status line's code, the raw text) once the server closed it; rejects after `ms`. */
function answerOf(t: TLSSocket, ms: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms; got ${JSON.stringify(text)}`)), ms);
    t.on('data', (d: Buffer) => (text += d.toString('latin1')));
    const end = () => {
      clearTimeout(timer);
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text });
    };
    t.once('end', end);
    t.once('close', end);
    t.on('error', () => undefined);
  });
}

const head = (length: number) => `POST /inject?timeout=10s HTTP/1.1\r\nhost: ${WEBHOOK_HOST}\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n\r\n`;

const review = JSON.stringify({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: 'limits-1', kind: { group: '', version: 'v1', kind: 'Pod' }, operation: 'CREATE', namespace: 'demo',
    object: { metadata: { generateName: 'web-' }, spec: { containers: [{ name: 'app', image: 'web:1' }] } },
  },
});

test('a declared body over the limit is refused with 413 at once, before any of it is sent', async () => {
  const port = await start();
  const t = await open(port);
  t.write(head(WEBHOOK_LIMITS.maxBodyBytes + 1));
  const r = await answerOf(t, 3000);
  expect(r.status).toBe(413);
  expect(r.text).toContain(`body over ${WEBHOOK_LIMITS.maxBodyBytes} bytes`);
  expect(r.text.toLowerCase()).toContain('connection: close');
});

test('bodies being read are bounded all together: past the budget a request gets 503 with Retry-After, and the budget comes back', async () => {
  const lines: string[] = [];
  const port = await start({ maxBodyBytes: 200 * 1024, maxBufferedBytes: 256 * 1024 }, createLogger({ sink: (l) => lines.push(l) }));
  const chunk = Buffer.alloc(150 * 1024, 0x20);
  // Two clients each send 150 KiB of a 190 KiB body and stall: the first fits the 256 KiB budget, the second does not.
  const a = await open(port);
  a.write(head(190 * 1024));
  a.write(chunk);
  const aAnswer = answerOf(a, 5000);
  // The first client's bytes are held before the second's arrive.
  await new Promise((r) => setTimeout(r, 200));
  const b = await open(port);
  b.write(head(190 * 1024));
  b.write(chunk);
  const rb = await answerOf(b, 3000);
  expect(rb.status).toBe(503);
  expect(rb.text.toLowerCase()).toContain('retry-after: 1');
  // A second refusal in the same busy spell: logged once, not per refusal (a flood of them is no flood of log lines).
  const c = await open(port);
  c.write(head(190 * 1024));
  c.write(chunk);
  expect((await answerOf(c, 3000)).status).toBe(503);
  expect(lines.map((l) => JSON.parse(l) as { level: string; msg: string }).filter((r) => r.level === 'warn').map((r) => r.msg)).toEqual([
    'injector busy: request bodies being read are at their limit; refusing with 503 (the API server then refuses the pod, failurePolicy Fail, and its controller retries; with Ignore it starts without a proxy)',
  ]);
  // The first client finishes its (non-JSON) body: 400, and its bytes are given back.
  a.end(Buffer.alloc(40 * 1024, 0x20));
  expect((await aAnswer).status).toBe(400);
  // Within the budget again: a real AdmissionReview is answered.
  const ok = await callWebhook(port, cert, 'POST', '/inject', review);
  expect(ok.status).toBe(200);
  expect(ok.json?.response).toMatchObject({ uid: 'limits-1', allowed: true });
});

test('a body nesting arrays or objects past maxJsonDepth is refused before JSON.parse, which would hold the control plane\'s thread for seconds', async () => {
  const port = await start();
  const n = 1_000_000; // 2 MB of `[[[…]]]`: valid JSON, about 1.5 s of JSON.parse
  const deep = await callWebhook(port, cert, 'POST', '/inject', '['.repeat(n) + ']'.repeat(n));
  expect([deep.status, deep.json]).toEqual([400, { error: `body nests deeper than ${WEBHOOK_LIMITS.maxJsonDepth} levels` }]);
  // Brackets inside strings are not nesting; a real AdmissionReview is well within the limit.
  const inString = JSON.parse(review) as { request: { object: { metadata: Record<string, unknown> } } };
  inString.request.object.metadata.annotations = { note: '['.repeat(1000) + '{'.repeat(1000) + '\\"' };
  const ok = await callWebhook(port, cert, 'POST', '/inject', JSON.stringify(inString));
  expect(ok.status).toBe(200);
});

test('a request whose body stalls is closed after the request timeout, not held for Node\'s default 300 s', async () => {
  const port = await start({ requestTimeoutMs: 1000 });
  const t = await open(port);
  t.write(head(1000));
  t.write('{"apiVersion":');
  const r = await answerOf(t, 5000);
  expect([0, 408]).toContain(r.status);
  // The webhook still answers others.
  expect((await callWebhook(port, cert, 'POST', '/inject', review)).status).toBe(200);
});

test('connections over maxConnections are closed at accept', async () => {
  const port = await start({ maxConnections: 2 });
  await open(port);
  await open(port);
  const third = connect({ host: '127.0.0.1', port, ca: cert, servername: WEBHOOK_HOST });
  sockets.push(third);
  const outcome = await new Promise<string>((resolve) => {
    third.once('secureConnect', () => resolve('connected'));
    third.once('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code ?? e.message}`));
    third.once('close', () => resolve('closed'));
  });
  expect(outcome).not.toBe('connected');
});
