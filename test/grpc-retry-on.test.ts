import * as grpc from '@grpc/grpc-js';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import type { Proxy } from '../proxy/proxy.js';
import { Ticker, type TickerClient } from './helpers/ticker-service.js';

/**
 * gRPC retries by grpc-status on real sockets (adv34): a grpc-js client through the
 * sidecar to two grpc-js servers, one answering every call UNAVAILABLE (a trailers-only
 * response). With `retryOn: [unavailable]` (Envoy's x-envoy-retry-grpc-on) each call that
 * meets it is retried on the other endpoint, with the caller's deadline less the time spent
 * in grpc-timeout; without, the UNAVAILABLE is the answer. RESOURCE_EXHAUSTED (429 once
 * mapped, a success for outlier detection) is retried only when named.
 */

const pki = testPki();
let client: Proxy;
const servers: grpc.Server[] = [];
const clients: grpc.Client[] = [];
/** `left`: each call's deadline as the server saw it, in ms from its arrival (grpc-js reads grpc-timeout into getDeadline()). */
interface Backend { port: number; calls: number; left: number[] }

async function backend(code: grpc.status): Promise<Backend> {
  const b: Backend = { port: 0, calls: 0, left: [] };
  const s = new grpc.Server();
  s.addService(Ticker.service, {
    Hang: (call: grpc.ServerUnaryCall<{ count: number }, { index: number }>, cb: grpc.sendUnaryData<{ index: number }>) => {
      b.calls++;
      const d = call.getDeadline();
      b.left.push(d instanceof Date ? d.getTime() - Date.now() : Number(d) - Date.now());
      if (code === grpc.status.OK) cb(null, { index: call.request.count });
      else cb({ code, details: 'on cue' });
    },
    Ticks: () => undefined,
  });
  b.port = await new Promise<number>((resolve, reject) => s.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  servers.push(s);
  return b;
}

let ok: Backend, down: Backend, busy: Backend;

beforeAll(async () => {
  ok = await backend(grpc.status.OK);
  down = await backend(grpc.status.UNAVAILABLE);
  busy = await backend(grpc.status.RESOURCE_EXHAUSTED);
  const policy = (retryOn: string[]) => ({ loadBalancer: { kind: 'round-robin' }, outlierDetection: { enabled: false }, retry: { retryOn, backoffBaseMs: '1ms' } });
  const eps = (bs: Backend[]) => bs.map((b) => ({ appPort: b.port, proxy: null }));
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      meshService('retried', 50051, eps([down, ok]), { protocol: 'grpc', policy: policy(['unavailable']) }),
      meshService('plain', 50051, eps([down, ok]), { protocol: 'grpc', policy: policy([]) }),
      meshService('busy', 50051, eps([busy, ok]), { protocol: 'grpc', policy: policy(['resource-exhausted']) }),
      meshService('busy-plain', 50051, eps([busy, ok]), { protocol: 'grpc', policy: policy(['unavailable']) }),
    ],
  });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await client.close();
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.tryShutdown(() => r()))));
});

const ticker = (authority: string): TickerClient => {
  const c = new Ticker(`127.0.0.1:${client.outboundPort}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': authority }) as TickerClient;
  clients.push(c);
  return c;
};

const hang = (c: TickerClient, n: number, deadlineMs = 5000): Promise<grpc.status> =>
  new Promise((resolve) => c.Hang({ count: n }, { deadline: new Date(Date.now() + deadlineMs) }, (e: grpc.ServiceError | null) => resolve(e ? e.code : grpc.status.OK)));

async function statuses(svc: string, n: number): Promise<grpc.status[]> {
  const c = ticker(`${svc}:50051`);
  const out: grpc.status[] = [];
  for (let i = 0; i < n; i++) out.push(await hang(c, i));
  return out;
}

test("retryOn: [unavailable]: every call that meets the UNAVAILABLE endpoint is retried on the other, with the deadline's remainder", async () => {
  const before = down.calls;
  expect(await statuses('retried', 6)).toEqual(Array(6).fill(grpc.status.OK));
  expect(down.calls - before).toBeGreaterThan(0);
  // The caller's 5 s deadline went upstream as what was left of it, never more.
  for (const ms of ok.left.slice(-6)) {
    expect(ms).toBeLessThanOrEqual(5000);
    expect(ms).toBeGreaterThan(3000);
  }
});

test('the default policy does not retry an UNAVAILABLE answer: the caller gets it', async () => {
  const got = await statuses('plain', 6);
  expect(got).toContain(grpc.status.UNAVAILABLE);
  expect(got).toContain(grpc.status.OK);
});

test('RESOURCE_EXHAUSTED is retried only when retryOn names it', async () => {
  expect(await statuses('busy', 6)).toEqual(Array(6).fill(grpc.status.OK));
  expect(await statuses('busy-plain', 6)).toContain(grpc.status.RESOURCE_EXHAUSTED);
});
