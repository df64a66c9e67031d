import { fullResponse, loadDiscoveryProto, telemetryToJson } from '../../contract/discovery.js';
import { createLogger } from '../../common/logger.js';
import { EMPTY_POLICY_VIEW, type PolicyView } from '../store/mesh-store.js';
import { parseTelemetryResource } from '../translate/telemetry-objects.js';
import { encodeTelemetrySuffix, WorkloadTelemetries } from './workload-telemetry.js';

const tel = (ns: string, name: string, spec: unknown, createdAt = '2026-01-01T00:00:00Z') =>
  parseTelemetryResource({ kind: 'Telemetry', metadata: { name, namespace: ns, creationTimestamp: createdAt }, spec }, '');
const id = (ns: string, pod: string, labels?: Record<string, string>) => ({ spiffeId: `spiffe://cluster.local/ns/${ns}/sa/x`, namespace: ns, pod, labels });

describe('WorkloadTelemetries', () => {
  test('resolved for the subscriber (namespace from its SPIFFE ID, labels from its Pod), as wire JSON', () => {
    const lines: string[] = [];
    const w = new WorkloadTelemetries(createLogger({ sink: (l) => lines.push(l) }), 'wren-system');
    const view: PolicyView = {
      ...EMPTY_POLICY_VIEW,
      telemetries: [tel('wren-system', 'mesh', { tracing: [{ randomSamplingPercentage: 5 }] }), tel('shop', 'web', { selector: { matchLabels: { app: 'web' } }, accessLogging: [{}] })],
      podLabels: new Map([['shop/web-0', { app: 'web' }]]),
    };
    expect(JSON.parse(w.jsonFor(view, id('shop', 'web-0')))).toEqual({ tracing: { samplingPercent: 5 }, accessLog: { enabled: true } });
    // The Pod's labels win over the ones the proxy sent (as for inbound policy).
    expect(JSON.parse(w.jsonFor(view, id('shop', 'web-0', { app: 'db' })))).toEqual({ tracing: { samplingPercent: 5 }, accessLog: { enabled: true } });
    expect(JSON.parse(w.jsonFor(view, id('shop', 'db-0', { app: 'db' })))).toEqual({ tracing: { samplingPercent: 5 } });
    expect(w.jsonFor(EMPTY_POLICY_VIEW, id('shop', 'web-0'))).toBe('');
    expect(lines).toEqual([]);
  });

  test('conflicting resources are logged once per view and workload', () => {
    const lines: string[] = [];
    const w = new WorkloadTelemetries(createLogger({ sink: (l) => lines.push(l) }), 'wren-system');
    const view: PolicyView = { ...EMPTY_POLICY_VIEW, telemetries: [tel('shop', 'a', {}, '2026-01-01T00:00:00Z'), tel('shop', 'b', {}, '2026-01-02T00:00:00Z')] };
    w.jsonFor(view, id('shop', 'p1', { app: 'web' }));
    w.jsonFor(view, id('shop', 'p2', { app: 'web' }));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({ level: 'warn', msg: 'conflicting Telemetry resources', detail: expect.stringContaining('shop/a applies (the oldest); shop/b ignored') });
  });

  test('the suffix appended to shared bytes sets the field (protobuf merges concatenated messages)', () => {
    const proto = loadDiscoveryProto();
    const shared = proto.encodeResponse(fullResponse('e-1', 'n', []));
    const json = telemetryToJson({ tracing: { samplingPercent: 5 }, accessLog: { enabled: undefined, samplingPercent: undefined } });
    const decoded = proto.decodeResponse(Buffer.concat([shared, encodeTelemetrySuffix(json)]));
    expect(decoded.version).toBe('e-1');
    expect(decoded.telemetry).toEqual({ overridesJson: json });
    expect(proto.decodeResponse(Buffer.concat([shared, encodeTelemetrySuffix('')])).telemetry).toEqual({ overridesJson: '' });
  });
});
