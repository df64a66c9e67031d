import type { DiscoveryResponse } from '../../contract/discovery.js';
import { applyTelemetry } from './apply-response.js';

const resp = (full: boolean, overridesJson?: string): DiscoveryResponse => ({
  version: 'v', nonce: 'n', full, baseVersion: '', services: [], removedServices: [], endpointDeltas: [],
  telemetry: overridesJson === undefined ? null : { overridesJson },
});
const NONE = { tracing: { samplingPercent: undefined }, accessLog: { enabled: undefined, samplingPercent: undefined } };

test('present replaces (even "": no pushed settings), absent keeps what is in force, full or delta', () => {
  const ten = applyTelemetry(undefined, resp(true, '{"tracing":{"samplingPercent":10}}'));
  expect(ten).toEqual({ tracing: { samplingPercent: 10 }, accessLog: { enabled: undefined, samplingPercent: undefined } });
  expect(applyTelemetry(ten, resp(false))).toBe(ten);
  expect(applyTelemetry(ten, resp(true))).toBe(ten);
  expect(applyTelemetry(undefined, resp(true))).toBeUndefined();
  expect(applyTelemetry(ten, resp(false, ''))).toEqual(NONE);
});

test('invalid pushed settings throw (the response is NACKed and the last good kept)', () => {
  expect(() => applyTelemetry(undefined, resp(false, '{"accessLog":{"samplingPercent":-5}}'))).toThrow(/^telemetry\.accessLog\.samplingPercent: /);
});
