import * as grpc from '@grpc/grpc-js';
import { type DiscoveryRequest } from '../../contract/discovery.js';
import { ControlPlane } from '../../control-plane/server.js';
import { shopWebControlPlane, discoveryStream } from '../helpers/discovery-stream.js';
import type { DirControlPlane } from '../helpers/dir-control-plane.js';

/**
 * The stream's protocol errors (Subscribe twice, a Subscribe without a SPIFFE ID, a first
 * message that is no Subscribe) ended the stream through a path of their own that counted
 * nothing: a client could make the control plane refuse streams at any rate and no metric
 * showed it. Each is now counted in wren_cp_discovery_refused_total with a fixed reason
 * and logged as every other refusal. A real control plane and raw discovery streams on loopback.
 */
let cp: ControlPlane;
const logs: string[] = [];
let mesh: DirControlPlane | undefined;

beforeAll(async () => {
  mesh = await shopWebControlPlane('wren-adv29-refusals-', logs);
  ({ cp } = mesh);
});

afterAll(async () => {
  await mesh?.kill();
});

const subscribe = (spiffeId: string): DiscoveryRequest => ({
  subscribe: { identity: { spiffeId, namespace: 'shop', pod: 'web-0', labels: {} }, services: [], lastVersion: '' },
});

/** Writes `messages` on a new stream and resolves with the status it ends with. */
async function endedWith(messages: DiscoveryRequest[]): Promise<grpc.StatusObject> {
  const { client, stream } = discoveryStream(cp.grpcPort);
  stream.on('data', () => undefined);
  const status = new Promise<grpc.StatusObject>((resolve) => stream.on('status', resolve));
  stream.on('error', () => undefined);
  for (const m of messages) stream.write(m);
  try {
    return await status;
  } finally {
    client.close();
  }
}

test.each([
  ['subscribe-twice', [subscribe('spiffe://cluster.local/ns/shop/sa/web'), subscribe('spiffe://cluster.local/ns/shop/sa/web')], grpc.status.FAILED_PRECONDITION],
  ['bad-spiffe-id', [subscribe('web')], grpc.status.INVALID_ARGUMENT],
  ['not-subscribed', [{ ack: { version: 'x', nonce: 'y' } }], grpc.status.FAILED_PRECONDITION],
] as const)('%s: the stream ends, counted under its reason and logged', async (reason, messages, code) => {
  const before = logs.length;
  const st = await endedWith([...messages]);
  expect(st.code).toBe(code);
  expect(await cp.metrics.registry.getSingleMetricAsString('wren_cp_discovery_refused_total')).toContain(`wren_cp_discovery_refused_total{reason="${reason}"} 1`);
  const line = logs.slice(before).find((l) => l.includes('discovery stream refused'));
  expect(JSON.parse(line!)).toMatchObject({ reason, code: grpc.status[code] });
});
