import { DEFAULT_INBOUND_POLICY } from '../../contract/defaults.js';
import { inboundPolicyToJson, loadDiscoveryProto, type DiscoveryResponse } from '../../contract/discovery.js';
import { parseInboundPolicy } from '../../contract/parse.js';
import { applyInboundPolicy } from './apply-response.js';

const permissive = parseInboundPolicy({ mtls: { mode: 'PERMISSIVE' } }, 'p');
const resp = (full: boolean, policy?: string | null): DiscoveryResponse => ({
  version: 'v', nonce: 'n', full, baseVersion: '', services: [], removedServices: [], endpointDeltas: [],
  inboundPolicy: policy === undefined ? null : policy === null ? null : { policyJson: policy },
});

test('full responses replace the policy (absent = defaults); deltas change it only when they carry one', () => {
  expect(applyInboundPolicy(null, resp(true, inboundPolicyToJson(permissive)))).toEqual(permissive);
  expect(applyInboundPolicy(permissive, resp(true))).toBe(DEFAULT_INBOUND_POLICY);
  expect(applyInboundPolicy(permissive, resp(false))).toBe(permissive);
  expect(applyInboundPolicy(permissive, resp(false, ''))).toBe(DEFAULT_INBOUND_POLICY);
});

test('an invalid policy throws with its field path (the client NACKs and keeps the last good one)', () => {
  expect(() => applyInboundPolicy(permissive, resp(false, '{"mtls":{"mode":"OFF"}}'))).toThrow(/^inboundPolicy\.mtls\.mode: expected one of/);
});

test('opaque ports pushed beside the policy ride on it, sorted and unique; invalid ones throw; none (an older control plane) leaves the policy as is', () => {
  const withPorts = (ports: number[] | undefined): DiscoveryResponse => ({ ...resp(false), inboundPolicy: { policyJson: inboundPolicyToJson(permissive), ...(ports ? { opaquePorts: ports } : {}) } });
  const p = applyInboundPolicy(null, withPorts([6000, 3306, 6000]));
  expect(p.opaquePorts).toEqual([3306, 6000]);
  expect(p.mtls.mode).toBe('PERMISSIVE');
  // Never in the policy JSON: the control plane's ACK bookkeeping and an older proxy's parser see none.
  expect(inboundPolicyToJson(p)).toBe(inboundPolicyToJson(permissive));
  expect(applyInboundPolicy(null, withPorts(undefined))).toEqual(permissive);
  expect(applyInboundPolicy(null, withPorts([]))).toEqual(permissive);
  expect(() => applyInboundPolicy(null, withPorts([0]))).toThrow('inboundPolicy.opaquePorts[0]: expected a port number (1..65535), got 0');
});

test('the opaque ports survive the wire (InboundPolicyResource.opaque_ports), and a response without them decodes to none', () => {
  const proto = loadDiscoveryProto();
  const r = { ...resp(false), inboundPolicy: { policyJson: '', opaquePorts: [3306, 6000] } };
  const back = proto.decodeResponse(proto.encodeResponse(r));
  expect(applyInboundPolicy(null, back).opaquePorts).toEqual([3306, 6000]);
  const none = proto.decodeResponse(proto.encodeResponse({ ...resp(false), inboundPolicy: { policyJson: '' } }));
  expect(applyInboundPolicy(null, none)).toBe(DEFAULT_INBOUND_POLICY);
});
