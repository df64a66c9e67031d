import { NO_TELEMETRY_OVERRIDES, TelemetrySource, resolveTelemetry, type TelemetryOverrides } from './telemetry-settings.js';

const overrides = (tracing?: number, enabled?: boolean, logSampling?: number): TelemetryOverrides => ({
  tracing: { samplingPercent: tracing },
  accessLog: { enabled, samplingPercent: logSampling },
});

describe('resolveTelemetry', () => {
  test('defaults: 1 % trace sampling (Istio), access logs off, 100 % of logs when on', () => {
    expect(resolveTelemetry(NO_TELEMETRY_OVERRIDES)).toEqual({ tracing: { samplingPercent: 1 }, accessLog: { enabled: false, samplingPercent: 100 } });
  });

  test('pushed fields fill what the local config leaves unset; local fields win', () => {
    const r = resolveTelemetry(overrides(undefined, true, undefined), overrides(25, false, 10));
    expect(r).toEqual({ tracing: { samplingPercent: 25 }, accessLog: { enabled: true, samplingPercent: 10 } });
  });

  test('0 is a value, not unset', () => {
    expect(resolveTelemetry(overrides(0), overrides(50)).tracing.samplingPercent).toBe(0);
  });
});

describe('TelemetrySource', () => {
  test('a push replaces the pushed layer and keeps the local one', () => {
    const s = new TelemetrySource(overrides(undefined, undefined, 5));
    s.applyPushed(overrides(30, true, 50));
    expect(s.current).toEqual({ tracing: { samplingPercent: 30 }, accessLog: { enabled: true, samplingPercent: 5 } });
    s.applyPushed(NO_TELEMETRY_OVERRIDES);
    expect(s.current).toEqual({ tracing: { samplingPercent: 1 }, accessLog: { enabled: false, samplingPercent: 5 } });
  });
});

describe('TelemetrySource.explain (admin /config_dump)', () => {
  test('each field with the layer that set it: local over pushed over default', () => {
    const s = new TelemetrySource(overrides(undefined, true, undefined));
    expect(s.explain()).toEqual({
      settings: { tracing: { samplingPercent: 1 }, accessLog: { enabled: true, samplingPercent: 100 } },
      from: { tracing: { samplingPercent: 'default' }, accessLog: { enabled: 'local', samplingPercent: 'default' } },
    });
    s.applyPushed(overrides(20, false, 0));
    expect(s.explain()).toEqual({
      settings: { tracing: { samplingPercent: 20 }, accessLog: { enabled: true, samplingPercent: 0 } },
      from: { tracing: { samplingPercent: 'pushed' }, accessLog: { enabled: 'local', samplingPercent: 'pushed' } },
    });
    s.applyPushed(NO_TELEMETRY_OVERRIDES);
    expect(s.explain().from).toEqual({ tracing: { samplingPercent: 'default' }, accessLog: { enabled: 'local', samplingPercent: 'default' } });
  });
});
