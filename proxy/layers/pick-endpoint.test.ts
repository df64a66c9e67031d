import { FakeClock } from '../../common/clock.js';
import { parseService } from '../../contract/parse.js';
import type { Endpoint } from '../../contract/model.js';
import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { ClusterHandle, ClusterSet } from '../outbound/cluster-set.js';
import type { Connector, Upstream } from '../net/connector.js';
import type { Outcome } from '../resilience/classify.js';
import { pickEndpoint } from './pick-endpoint.js';
import { attachState, stateOf, TryTimer } from './request-state.js';

/** pick-endpoint over fake connectors and a fake cluster: when it connects, what it admits, what it records. */
const service = parseService(
  { name: 'db', namespace: 'default', ports: [{ port: 5432, endpoints: [{ address: '10.0.0.1', port: 5432, proxyPort: 15006, identity: 'spiffe://td/ns/default/sa/db' }] }], policy: { timeouts: { connectMs: '250ms' } } },
  'svc',
);
const port = service.ports[0];
const ep = port.endpoints[0];

function fakeCluster() {
  const admitted = { connections: 0, pending: 0, released: 0 };
  const outcomes: Outcome[] = [];
  const latencies: number[] = [];
  const hashKeys: unknown[] = [];
  const c = {
    name: 'db.default:5432',
    admitConnection: (kind: 'connections' | 'pending') => {
      admitted[kind]++;
      return { release: () => void admitted.released++ };
    },
    pick: (o: { hashKey: unknown }) => {
      hashKeys.push(o.hashKey);
      return ep;
    },
    pinned: () => ep,
    start: () => (o: Outcome, ms: number) => {
      outcomes.push(o);
      latencies.push(ms);
    },
  } as unknown as ClusterHandle;
  return { c, admitted, outcomes, latencies, hashKeys };
}

function fakeConnector(ready: Upstream | undefined, opening = false) {
  const calls: { ep: Endpoint; timeoutMs: number; connection: unknown }[] = [];
  let result: Promise<Upstream> = Promise.resolve({ kind: 'h2', session: {} } as Upstream);
  const connector: Connector = {
    ready: () => ready,
    opening: () => opening,
    connect: (e, timeoutMs, connection) => {
      calls.push({ ep: e, timeoutMs, connection });
      return result;
    },
  };
  return { connector, calls, fail: (err: Error) => void (result = Promise.reject(err)) };
}

function request(origProto: ProxyRequest['origProto'], cluster: ClusterHandle): ProxyRequest {
  const req: ProxyRequest = {
    method: origProto === 'TCP' ? 'CONNECT' : 'GET', scheme: 'http', authority: 'db', path: '/', headers: {}, body: null, trailers: () => undefined,
    origProto, source: { address: '10.0.0.9', port: 1, identity: '' }, signal: new AbortController().signal, startedAt: 0,
    route: { service, port },
  };
  attachState(req, cluster);
  return req;
}

const ok: ProxyResponse = { status: 200, headers: {}, body: null, trailers: () => undefined };

test('an endpoint whose upstream is open: no connect, no admission, and the terminal gets that upstream', async () => {
  const { c, admitted } = fakeCluster();
  const open = { kind: 'h2', session: {} } as Upstream;
  const f = fakeConnector(open);
  let seen: Upstream | undefined;
  const svc = pickEndpoint({ clusters: () => ({}) as ClusterSet, clock: new FakeClock(), connectorFor: () => f.connector })((req) => {
    seen = stateOf(req)?.upstream;
    return Promise.resolve(ok);
  });
  expect(await svc(request('HTTP/2', c))).toBe(ok);
  expect(f.calls).toEqual([]);
  expect(admitted).toEqual({ connections: 0, pending: 0, released: 0 });
  expect(seen).toBe(open);
});

test('an endpoint with nothing open: the request is pending and takes a connection slot, connects with the policy\'s connect timeout', async () => {
  const { c, admitted } = fakeCluster();
  const f = fakeConnector(undefined);
  let seen: Upstream | undefined;
  const svc = pickEndpoint({ clusters: () => ({}) as ClusterSet, clock: new FakeClock(), connectorFor: () => f.connector })((req) => {
    seen = stateOf(req)?.upstream;
    return Promise.resolve(ok);
  });
  await svc(request('HTTP/2', c));
  expect(f.calls).toHaveLength(1);
  expect(f.calls[0].timeoutMs).toBe(250);
  expect(f.calls[0].connection).toBeDefined();
  expect(seen?.kind).toBe('h2');
  // The pending slot is given back once connected; the connection slot is the connector's to hold.
  expect(admitted).toEqual({ connections: 1, pending: 1, released: 1 });
});

test('an opaque TCP connection holds its connection slot already (admission): it waits as pending but takes no second slot', async () => {
  const { c, admitted } = fakeCluster();
  const f = fakeConnector(undefined);
  const svc = pickEndpoint({ clusters: () => ({}) as ClusterSet, clock: new FakeClock(), connectorFor: () => f.connector })(() => Promise.resolve(ok));
  await svc(request('TCP', c));
  expect(f.calls[0].connection).toBeUndefined();
  expect(admitted).toEqual({ connections: 0, pending: 1, released: 1 });
});

test('a connect failure is recorded as not sent (always safe to retry), and no terminal is called', async () => {
  const { c, outcomes } = fakeCluster();
  const f = fakeConnector(undefined, true);
  f.fail(new ProxyError('CONNECT_TIMEOUT', 'after 250 ms'));
  let called = false;
  const svc = pickEndpoint({ clusters: () => ({}) as ClusterSet, clock: new FakeClock(), connectorFor: () => f.connector })(() => {
    called = true;
    return Promise.resolve(ok);
  });
  const req = request('HTTP/2', c);
  await expect(svc(req)).rejects.toMatchObject({ code: 'CONNECT_TIMEOUT' });
  expect(called).toBe(false);
  expect(outcomes).toHaveLength(1);
  expect(outcomes[0].kind).toBe('failure');
  expect(outcomes[0].retryable.alwaysSafe).toBe(true);
  expect(stateOf(req)?.sent).toBe(false);
});

test('no connector (an HTTP/1.1 pool that connects by itself): straight to the terminal', async () => {
  const { c, admitted } = fakeCluster();
  const svc = pickEndpoint({ clusters: () => ({}) as ClusterSet, clock: new FakeClock(), connectorFor: () => undefined })(() => Promise.resolve(ok));
  expect(await svc(request('HTTP/1.1', c))).toBe(ok);
  expect(admitted).toEqual({ connections: 0, pending: 0, released: 0 });
});

test("a meshed endpoint's sidecar answering its own connect-refused: the cluster records the endpoint's local-origin connect failure, not an app's 502", async () => {
  const { c, outcomes } = fakeCluster();
  const refused: ProxyResponse = { status: 502, headers: { 'wren-proxy-error': 'connect-refused' }, body: null, trailers: () => undefined };
  const svc = pickEndpoint({ clusters: () => ({}) as ClusterSet, clock: new FakeClock(), connectorFor: () => undefined })(() => Promise.resolve(refused));
  await svc(request('HTTP/1.1', c));
  expect(outcomes).toHaveLength(1);
  expect(outcomes[0]).toMatchObject({ kind: 'failure', origin: 'local', reason: 'connect-refused', retryable: { alwaysSafe: true } });
});

// adv9 D6: header(req.headers, hashHeader) found Object.prototype's `constructor` (a function) as the hash key.
test.each(['constructor', '__proto__'])('a hashHeader named %s hashes the request\'s own field, else the source address', async (name) => {
  const hashed = parseService({ ...{ name: 'db', namespace: 'default' }, ports: [{ port: 5432, endpoints: [{ address: '10.0.0.1', port: 5432, proxyPort: 15006, identity: 'spiffe://td/ns/default/sa/db' }] }], policy: { loadBalancer: { kind: 'ring-hash', hashHeader: name } } }, 'svc');
  const { c, hashKeys } = fakeCluster();
  const f = fakeConnector({ kind: 'h2', session: {} } as Upstream);
  const svc = pickEndpoint({ clusters: () => ({}) as ClusterSet, clock: new FakeClock(), connectorFor: () => f.connector })(() => Promise.resolve(ok));
  const req = (headers: Record<string, string>): ProxyRequest => {
    const r = request('HTTP/2', c);
    return { ...r, headers, route: { service: hashed, port: hashed.ports[0] } } as ProxyRequest;
  };
  for (const r of [req({}), req(Object.defineProperty({}, name, { value: 'user-1', enumerable: true }) as Record<string, string>)]) {
    attachState(r, c);
    await svc(r);
  }
  expect(hashKeys).toEqual(['10.0.0.9', 'user-1']);
});

// A hashHeader written `X-User` never matched: the codecs store field names lower-cased (RFC 9110 section 5.1: names are case-insensitive).
test('a hashHeader given in any case hashes the request\'s field of that name', async () => {
  const hashed = parseService({ ...{ name: 'db', namespace: 'default' }, ports: [{ port: 5432, endpoints: [{ address: '10.0.0.1', port: 5432, proxyPort: 15006, identity: 'spiffe://td/ns/default/sa/db' }] }], policy: { loadBalancer: { kind: 'ring-hash', hashHeader: 'X-User' } } }, 'svc');
  expect(hashed.ports[0].policy?.loadBalancer.hashHeader ?? hashed.policy?.loadBalancer.hashHeader).toBe('x-user');
  const { c, hashKeys } = fakeCluster();
  const f = fakeConnector({ kind: 'h2', session: {} } as Upstream);
  const svc = pickEndpoint({ clusters: () => ({}) as ClusterSet, clock: new FakeClock(), connectorFor: () => f.connector })(() => Promise.resolve(ok));
  const r = { ...request('HTTP/2', c), headers: { 'x-user': 'user-7' }, route: { service: hashed, port: hashed.ports[0] } } as ProxyRequest;
  attachState(r, c);
  await svc(r);
  expect(hashKeys).toEqual(['user-7']);
});

// adv13: `host` is kept out of the headers (the request's authority), so a hashHeader `host` hashed every request by its source address.
test('a hashHeader host hashes the request\'s authority', async () => {
  const hashed = parseService({ ...{ name: 'db', namespace: 'default' }, ports: [{ port: 5432, endpoints: [{ address: '10.0.0.1', port: 5432, proxyPort: 15006, identity: 'spiffe://td/ns/default/sa/db' }] }], policy: { loadBalancer: { kind: 'ring-hash', hashHeader: 'Host' } } }, 'svc');
  const { c, hashKeys } = fakeCluster();
  const f = fakeConnector({ kind: 'h2', session: {} } as Upstream);
  const svc = pickEndpoint({ clusters: () => ({}) as ClusterSet, clock: new FakeClock(), connectorFor: () => f.connector })(() => Promise.resolve(ok));
  for (const authority of ['tenant-a.example', '']) {
    const r = { ...request('HTTP/1.1', c), authority, headers: {}, route: { service: hashed, port: hashed.ports[0] } } as ProxyRequest;
    attachState(r, c);
    await svc(r);
  }
  expect(hashKeys).toEqual(['tenant-a.example', '10.0.0.9']);
});

// tower's PeakEwma (Linkerd's balancer) times a request from its call on a ready endpoint:
// the connection's setup is not the endpoint's latency. A new endpoint's first request
// charged with a TLS handshake under load (hundreds of ms) stayed out of P2C for tens of seconds.
test('the latency given to the balancer starts once the connector has connected, not at the pick', async () => {
  const { c, latencies } = fakeCluster();
  const clock = new FakeClock();
  const f = fakeConnector(undefined);
  const connected = f.connector.connect;
  f.connector.connect = (e, t, conn) => {
    clock.advance(200); // the handshake
    return connected(e, t, conn);
  };
  const svc = pickEndpoint({ clusters: () => ({}) as ClusterSet, clock, connectorFor: () => f.connector })(() => {
    clock.advance(7);
    return Promise.resolve(ok);
  });
  expect((await svc(request('HTTP/1.1', c))).status).toBe(200);
  expect(latencies).toEqual([7]);
});

test("the latency given to the balancer starts at the pool's sentAt when the request waited for its connection", async () => {
  const { c, latencies } = fakeCluster();
  const clock = new FakeClock();
  const svc = pickEndpoint({ clusters: () => ({}) as ClusterSet, clock, connectorFor: () => undefined })(() => {
    clock.advance(300);
    const sentAt = clock.now();
    clock.advance(5);
    return Promise.resolve({ ...ok, sentAt });
  });
  await svc(request('HTTP/1.1', c));
  // Sent at once (-1): from the pick.
  const atOnce = pickEndpoint({ clusters: () => ({}) as ClusterSet, clock, connectorFor: () => undefined })(() => {
    clock.advance(4);
    return Promise.resolve({ ...ok, sentAt: -1 });
  });
  await atOnce(request('HTTP/1.1', c));
  expect(latencies).toEqual([5, 4]);
});

test('a connect that fails is charged its whole time (a slow refusal looks slow)', async () => {
  const { c, latencies } = fakeCluster();
  const clock = new FakeClock();
  const f = fakeConnector(undefined);
  f.fail(new ProxyError('CONNECT_FAILED'));
  const connected = f.connector.connect;
  f.connector.connect = (e, t, conn) => {
    clock.advance(120);
    return connected(e, t, conn);
  };
  const svc = pickEndpoint({ clusters: () => ({}) as ClusterSet, clock, connectorFor: () => f.connector })(() => Promise.resolve(ok));
  await expect(svc(request('HTTP/1.1', c))).rejects.toThrow();
  expect(latencies).toEqual([120]);
});

test("the attempt's per-try timers stop while it connects, and start again from zero once connected (Envoy onPoolReady; adv62)", async () => {
  const { c } = fakeCluster();
  const clock = new FakeClock();
  let up: ((u: Upstream) => void) | undefined;
  const connector: Connector = { ready: () => undefined, opening: () => false, connect: () => new Promise<Upstream>((r) => (up = r)) };
  const req = request('HTTP/2', c);
  const st = stateOf(req)!;
  let fired = 0;
  st.newTry();
  st.addTryTimer(new TryTimer(clock, 100, () => fired++));
  let forwardedAt = -1;
  const svc = pickEndpoint({ clusters: () => ({}) as ClusterSet, clock, connectorFor: () => connector })(() => {
    forwardedAt = clock.now();
    return Promise.resolve(ok);
  });
  const t0 = clock.now();
  const res = svc(req);
  clock.advance(300); // the peer's handshake
  expect(fired).toBe(0);
  up!({ kind: 'h2', session: {} } as Upstream);
  await res;
  expect(forwardedAt - t0).toBe(300);
  clock.advance(99);
  expect(fired).toBe(0);
  clock.advance(1);
  expect(fired).toBe(1);
});
