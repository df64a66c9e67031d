import { fullResponse, loadDiscoveryProto, telemetryFromJson, telemetryToJson } from './discovery.js';
import type { PushedTelemetry } from './model.js';

const t = (samplingPercent?: number, enabled?: boolean, logSampling?: number): PushedTelemetry => ({
  tracing: { samplingPercent }, accessLog: { enabled, samplingPercent: logSampling },
});

describe('telemetry on the discovery contract', () => {
  test('JSON: only the fields set, "" for none; 0 and false are set', () => {
    expect(telemetryToJson(t())).toBe('');
    expect(telemetryToJson(t(10))).toBe('{"tracing":{"samplingPercent":10}}');
    expect(JSON.parse(telemetryToJson(t(0, false)))).toEqual({ tracing: { samplingPercent: 0 }, accessLog: { enabled: false } });
    for (const v of [t(), t(12.5), t(undefined, true, 50), t(0, false, 0), t(100, true, 100)]) expect(telemetryFromJson(telemetryToJson(v), 'telemetry')).toEqual(v);
  });

  test('bad pushed settings are refused with their field path', () => {
    expect(() => telemetryFromJson('{"tracing":{"samplingPercent":101}}', 'telemetry')).toThrow(/^telemetry\.tracing\.samplingPercent: /);
    expect(() => telemetryFromJson('{"accessLog":{"enabled":"yes"}}', 'telemetry')).toThrow(/^telemetry\.accessLog\.enabled: /);
    expect(() => telemetryFromJson('{"tracing":{"sampling":1}}', 'telemetry')).toThrow(/^telemetry\.tracing\.sampling: unknown field/);
    expect(() => telemetryFromJson('{', 'telemetry')).toThrow(/^telemetry: invalid JSON/);
  });

  test('protobuf: absent stays absent (keep), present-but-empty arrives as "" (no overrides), a value round-trips', () => {
    const proto = loadDiscoveryProto();
    const base = fullResponse('e-1', 'n', []);
    expect(proto.decodeResponse(proto.encodeResponse(base)).telemetry).toBeNull();
    expect(proto.decodeResponse(proto.encodeResponse({ ...base, telemetry: { overridesJson: '' } })).telemetry).toEqual({ overridesJson: '' });
    const json = telemetryToJson(t(25, true, 10));
    const decoded = proto.decodeResponse(proto.encodeResponse({ ...base, telemetry: { overridesJson: json } }));
    expect(telemetryFromJson(decoded.telemetry!.overridesJson, 'telemetry')).toEqual(t(25, true, 10));
  });
});
