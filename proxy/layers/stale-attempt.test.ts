import { FakeClock } from '../../common/clock.js';
import { parseService } from '../../contract/parse.js';
import type { Service } from '../../contract/model.js';
import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { Cluster } from '../resilience/cluster.js';
import type { ClusterSet } from '../outbound/cluster-set.js';
import type { Connector, Upstream } from '../net/connector.js';
import { abortReason } from './race-signal.js';
import { attachState, stateOf } from './request-state.js';
import { backendRequestTimeout } from './timeouts.js';
import { pickEndpoint } from './pick-endpoint.js';
import { retry } from './retry.js';

/**
 * A try ended from above (an HTTPRoute rule's backendRequest timeout races the try and
 * settles first) whose upstream settles a turn later, as an HTTP/2 stream does after its
 * reset, while the next try has already started: full jitter drew a backoff of 0. The old
 * try's result must not land on the new try's request state (ResilienceState.tries).
 */
test('a timed-out try that settles after the next one started leaves that try\'s request state alone (backoff 0)', async () => {
  const clock = new FakeClock(0);
  const parsed = parseService(
    {
      name: 'api', namespace: 'shop',
      ports: [{ port: 80, endpoints: [{ address: '10.0.0.1', port: 8080 }, { address: '10.0.0.2', port: 8080 }] }],
      policy: { retry: { attempts: 1, retryOn: ['per-try-timeout'], backoffBaseMs: 25, backoffMaxMs: 250 } },
    },
    'svc',
  );
  // The rule's backendRequest, as port-routing.ts derives it onto the rule's backends' policy.
  const policy = { ...parsed.policy, timeouts: { ...parsed.policy.timeouts, backendRequestMs: 100 } };
  const service: Service = { ...parsed, policy, ports: parsed.ports.map((p) => ({ ...p, policy: p.policy ? { ...p.policy, timeouts: { ...p.policy.timeouts, backendRequestMs: 100 } } : p.policy })) };
  // random() = 0: every full-jitter backoff is 0, so the next try starts in the same turn.
  const cluster = new Cluster({ name: 'api.shop:80', policy, clock, random: () => 0, activeHealthChecks: false });
  cluster.update(service.ports[0].endpoints);

  const tried: string[] = [];
  const late: (() => void)[] = [];
  // The second try's endpoint has no connection yet: it waits for one (its connect is held here).
  let connect: ((u: Upstream) => void) | undefined;
  const connectorFor = (): Connector => ({
    ready: () => (tried.length === 0 ? ({ kind: 'h2', session: {} } as Upstream) : undefined),
    opening: () => false,
    connect: () => new Promise<Upstream>((r) => void (connect = r)),
  });
  // The upstream watches the signal, and rejects a turn after it aborts (an HTTP/2 stream's close).
  const upstream = (req: ProxyRequest): Promise<ProxyResponse> => {
    tried.push(req.endpoint!.address);
    return new Promise((_resolve, reject) => {
      req.signal.addEventListener('abort', () => late.push(() => reject(abortReason(req.signal))), { once: true });
    });
  };
  const svc = retry(clock)(backendRequestTimeout(clock)(pickEndpoint({ clusters: () => ({}) as ClusterSet, clock, connectorFor, watchesSignal: () => true })(upstream)));

  const req = { method: 'GET', path: '/', authority: 'api', headers: {}, body: null, trailers: () => undefined, origProto: 'HTTP/2', source: { address: '10.0.0.9', port: 1, identity: '' }, signal: new AbortController().signal, startedAt: 0, route: { service, port: service.ports[0] } } as unknown as ProxyRequest;
  cluster.admit('request');
  attachState(req, cluster);
  const st = stateOf(req)!;
  const answer = svc(req).catch((e: unknown) => e);
  await new Promise((r) => setImmediate(r));
  expect(tried).toHaveLength(1);
  // The first try's backendRequest timeout: the try is ended above pick-endpoint, retried at once.
  clock.advance(100);
  await new Promise((r) => setImmediate(r));
  // The second try waits for its connection: nothing of it went out, and it has no outcome yet.
  expect(connect).toBeDefined();
  expect(st.tries).toBe(2);
  expect({ sent: st.sent, outcome: st.outcome }).toEqual({ sent: false, outcome: undefined });
  // Now the first try's upstream settles (its timeout, its request sent).
  for (const f of late.splice(0)) f();
  await new Promise((r) => setImmediate(r));
  expect({ sent: st.sent, outcome: st.outcome }).toEqual({ sent: false, outcome: undefined });
  // The second try goes on as its own: connected, sent, answered.
  connect!({ kind: 'h2', session: {} } as Upstream);
  await new Promise((r) => setImmediate(r));
  expect(st.sent).toBe(true);
  clock.advance(100);
  for (const f of late.splice(0)) f();
  expect(await answer).toMatchObject({ code: 'REQUEST_TIMEOUT' });
  expect(new Set(tried).size).toBe(2);
}, 5000);
