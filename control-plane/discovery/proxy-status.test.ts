import type * as grpc from '@grpc/grpc-js';
import type { DiscoveryRequest } from '../../contract/discovery.js';
import { proxyStatusRow, syncStatus } from './proxy-status.js';
import { newSubscriber, type Entry, type Subscriber } from './subscriber.js';

const call = { getPeer: () => 'ipv4:127.0.0.1:5000' } as unknown as grpc.ServerDuplexStream<DiscoveryRequest, Buffer>;
const entry = (version: string): Entry & { sentAt: number; policyJson: null; opaquePorts: null; trustKey: null; telemetryJson: null; egressJson: null } => ({
  seq: 1, version, committedAt: 0, nonce: 'n', view: new Map(), routeNs: '*', full: true, bytes: null, response: null, withPolicy: new Map(), sentAt: 1_000, policyJson: null, opaquePorts: null, trustKey: null, telemetryJson: null, egressJson: null,
});

function subscribed(): Subscriber {
  const s = newSubscriber(7, call, 1_000);
  s.sub = { identity: { spiffeId: 'spiffe://td/ns/shop/sa/web', namespace: 'shop', pod: 'web-0' }, services: [], lastVersion: '', proxyVersion: '9.9.9' };
  return s;
}

test('STALE until something is sent and ACKed, SYNCED after the ACK, NACKED after a NACK until the next ACK', () => {
  const s = subscribed();
  expect(syncStatus(s)).toBe('STALE'); // nothing sent yet
  s.inflight = entry('v1');
  s.lastSent = { version: 'v1', at: 1_000 };
  expect(syncStatus(s)).toBe('STALE'); // sent, not ACKed
  s.inflight = null;
  s.ackedVersion = 'v1';
  expect(syncStatus(s)).toBe('SYNCED');
  s.nackedSinceAck = true;
  s.lastNack = { version: 'v2', detail: 'services[0]: bad', at: 2_000 };
  expect(syncStatus(s)).toBe('NACKED');
  expect(proxyStatusRow(s, 5_000, 'v2', null, null)).toMatchObject({ status: 'NACKED', ackedVersion: 'v1', nack: { version: 'v2', detail: 'services[0]: bad', agoMs: 3_000 } });
  s.nackedSinceAck = false;
  // An old NACK is history (nacks counts it), not the proxy's state.
  expect(proxyStatusRow(s, 5_000, 'v2', null, null)).toMatchObject({ status: 'SYNCED', nack: null, nacks: 0 });
});

test('a row: pod, release, certificate judged against the current anchors, last seen', () => {
  const s = subscribed();
  s.lastSeenAt = 4_000;
  expect(proxyStatusRow(s, 5_000, 'v1', 'k', new Set(['AA']))).toMatchObject({
    pod: 'web-0', namespace: 'shop', identity: 'spiffe://td/ns/shop/sa/web', proxyVersion: '9.9.9', cert: null, lastSeenAgoMs: 1_000, trustStateAcked: false,
    connectedSince: new Date(1_000).toISOString(), connectedForMs: 4_000,
  });
  s.identityReport = { report: { trustAnchorFingerprints: ['AA', 'BB'], chainRootFingerprint: 'BB', leafSerial: 'ab', notAfterMs: 9_000, startupTrustAnchorFingerprints: [] }, at: 3_000 };
  expect(proxyStatusRow(s, 5_000, 'v1', null, new Set(['AA']))?.cert).toEqual({ serial: 'AB', notAfter: new Date(9_000).toISOString(), chainRoot: 'BB', chainsToCurrentAnchor: false, trusts: ['AA', 'BB'] });
  expect(proxyStatusRow(s, 5_000, 'v1', null, new Set(['BB']))?.cert?.chainsToCurrentAnchor).toBe(true);
  expect(proxyStatusRow(s, 5_000, 'v1', null, null)?.cert?.chainsToCurrentAnchor).toBeNull(); // not a CA: unknown
  s.sub = { ...s.sub!, proxyVersion: '' };
  expect(proxyStatusRow(s, 5_000, 'v1', null, null).proxyVersion).toBeNull(); // an older proxy
});
