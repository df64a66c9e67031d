import { DEFAULT_INBOUND_POLICY } from '../../contract/defaults.js';
import { inboundPolicyToJson, type DiscoveryResponse } from '../../contract/discovery.js';
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
