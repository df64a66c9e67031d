import { createServer as createNetServer, type Socket } from 'node:net';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import { listenOnLoopback } from '../helpers/fake-app.js';
import { until } from '../helpers/until.js';
import type { Proxy } from '../../proxy/proxy.js';
import { h2request, type H2Result } from './h2-mesh.js';

/**
 * circuitBreaker.maxPendingRequests for HTTP/2 while the session to a peer is being
 * established (docs/resilience.md, "Connection limits": a pending request waits for a peer
 * session). The peer here accepts TCP and never answers the TLS handshake.
 *
 * On `h2` the calls wait in pick-endpoint as pending requests: one is admitted (504 at the
 * connect timeout), the others get 503 overflow at once. What happened on `mux`: a call
 * waiting for a new multiplexer session was not counted at all (the pool got no cluster
 * limits for HTTP/2), so every call waited for the connect timeout, none overflowed, and the
 * cluster's pending count stayed 0.
 */
const pki = testPki();
const closers: (() => Promise<void>)[] = [];
const clients = new Map<string, Proxy>();
const held = new Set<Socket>();

beforeAll(async () => {
  const bh = createNetServer((s) => {
    held.add(s);
    s.on('error', () => undefined);
    s.on('close', () => held.delete(s));
  });
  const l = await listenOnLoopback(bh);
  closers.push(async () => {
    for (const s of held) s.destroy();
    await l.close();
  });
  const tls = (await startProxy({ pki, serviceAccount: 'backend' })).tls;
  for (const meshHttp2 of ['mux', 'h2'] as const) {
    clients.set(meshHttp2, await startProxy({
      pki, serviceAccount: 'client', config: { protocol: { meshHttp2 } },
      services: [meshService('pend', 80, [{ appPort: 8080, proxy: { inboundPort: l.port, tls } as unknown as Proxy }], {
        protocol: 'http2',
        policy: { outlierDetection: { enabled: false }, circuitBreaker: { maxPendingRequests: 1 }, timeouts: { connectMs: '600ms' }, retry: { attempts: 1 } },
      })],
    }));
  }
});

afterAll(async () => {
  for (const c of clients.values()) await c.close();
  for (const c of closers) await c();
});

type Limits = Record<string, { limits: Record<'connections' | 'pending', { active: number; max: number }> }>;

describe.each(['mux', 'h2'])('protocol.meshHttp2 %s', (t) => {
  test('maxPendingRequests 1 while the session to the peer is being established: one call waits for it, the others get 503 overflow at once', async () => {
    const client = clients.get(t)!;
    const view = async () => ((await (await fetch(`http://127.0.0.1:${client.adminPort}/clusters`)).json()) as Limits)['pend.default:80'].limits.pending;
    const t0 = Date.now();
    const timed = (p: Promise<H2Result>) => p.then((r) => ({ ...r, ms: Date.now() - t0 }));
    const first = timed(h2request(client, { ':authority': 'pend.default.svc.cluster.local' }));
    // The first call is pending while the handshake hangs.
    expect(await until(async () => (await view()).active === 1, 2000)).toBe(true);
    const others = await Promise.all([0, 1].map(() => timed(h2request(client, { ':authority': 'pend.default.svc.cluster.local' }))));
    for (const r of others) {
      expect(r.status).toBe(503);
      expect(r.headers!['wren-proxy-error']).toBe('overflow');
      expect(r.ms).toBeLessThan(500); // not queued behind the 600 ms connect timeout
    }
    const waited = await first;
    expect(waited.status).toBe(504);
    expect(waited.headers!['wren-proxy-error']).toBe('connect-timeout');
    expect(await view()).toEqual({ active: 0, max: 1 });
    const metrics = await (await fetch(`http://127.0.0.1:${client.adminPort}/metrics`)).text();
    expect(/^wren_overflow_total\{cluster="pend.default:80",limit="pending"\} (\d+)$/m.exec(metrics)?.[1]).toBe('2');
  });
});
