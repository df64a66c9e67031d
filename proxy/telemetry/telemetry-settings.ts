/**
 * What the sidecar records beyond metrics: trace sampling and access logging, resolved for
 * this workload (docs/observability.md). Three places can set a field, the most specific
 * winning:
 *  1. the proxy's own config (`telemetry` in the config file; in a cluster the pod
 *     annotations, which the injector turns into environment variables);
 *  2. what the control plane pushes for this workload (the Telemetry resources that select
 *     it: workload selector over namespace over mesh-wide, as Istio's Telemetry API);
 *  3. the defaults: 1 % of new traces sampled (Istio's default), access logs off.
 *
 * Layers read `TelemetrySource.current` per request: one property load, no allocation.
 */
export interface TelemetrySettings {
  readonly tracing: {
    /** Percent (0-100) of requests arriving without a sampling decision that start a sampled trace. */
    readonly samplingPercent: number;
  };
  readonly accessLog: {
    readonly enabled: boolean;
    /** Percent (0-100) of requests and TCP connections logged when enabled. */
    readonly samplingPercent: number;
  };
}

/** The fields a layer of configuration may set; undefined leaves the field to the next layer down. */
export interface TelemetryOverrides {
  readonly tracing: { readonly samplingPercent: number | undefined };
  readonly accessLog: { readonly enabled: boolean | undefined; readonly samplingPercent: number | undefined };
}

export const NO_TELEMETRY_OVERRIDES: TelemetryOverrides = Object.freeze({
  tracing: Object.freeze({ samplingPercent: undefined }),
  accessLog: Object.freeze({ enabled: undefined, samplingPercent: undefined }),
});

const DEFAULTS: TelemetrySettings = Object.freeze({
  tracing: Object.freeze({ samplingPercent: 1 }),
  accessLog: Object.freeze({ enabled: false, samplingPercent: 100 }),
});

/** local over pushed over the defaults, field by field. */
export function resolveTelemetry(local: TelemetryOverrides, pushed: TelemetryOverrides = NO_TELEMETRY_OVERRIDES): TelemetrySettings {
  return Object.freeze({
    tracing: Object.freeze({
      samplingPercent: local.tracing.samplingPercent ?? pushed.tracing.samplingPercent ?? DEFAULTS.tracing.samplingPercent,
    }),
    accessLog: Object.freeze({
      enabled: local.accessLog.enabled ?? pushed.accessLog.enabled ?? DEFAULTS.accessLog.enabled,
      samplingPercent: local.accessLog.samplingPercent ?? pushed.accessLog.samplingPercent ?? DEFAULTS.accessLog.samplingPercent,
    }),
  });
}

/** Which layer set a field: the proxy's config (file or annotations), the control plane, or the defaults. */
export type TelemetryLayer = 'local' | 'pushed' | 'default';

/** The settings in force with the layer each field came from (/config_dump `telemetry`). */
export interface TelemetryExplained {
  readonly settings: TelemetrySettings;
  readonly from: {
    readonly tracing: { readonly samplingPercent: TelemetryLayer };
    readonly accessLog: { readonly enabled: TelemetryLayer; readonly samplingPercent: TelemetryLayer };
  };
}

const layerOf = (local: unknown, pushed: unknown): TelemetryLayer => (local !== undefined ? 'local' : pushed !== undefined ? 'pushed' : 'default');

/** The settings in force; the control plane's pushes replace the pushed layer (absent: keep). */
export class TelemetrySource {
  private settings: TelemetrySettings;
  private pushed: TelemetryOverrides = NO_TELEMETRY_OVERRIDES;

  constructor(private readonly local: TelemetryOverrides) {
    this.settings = resolveTelemetry(local);
  }

  get current(): TelemetrySettings {
    return this.settings;
  }

  applyPushed(pushed: TelemetryOverrides): void {
    this.pushed = pushed;
    this.settings = resolveTelemetry(this.local, pushed);
  }

  /** For operators (admin /config_dump): each field's value and the layer that set it. */
  explain(): TelemetryExplained {
    const { local: l, pushed: p } = this;
    return {
      settings: this.settings,
      from: {
        tracing: { samplingPercent: layerOf(l.tracing.samplingPercent, p.tracing.samplingPercent) },
        accessLog: { enabled: layerOf(l.accessLog.enabled, p.accessLog.enabled), samplingPercent: layerOf(l.accessLog.samplingPercent, p.accessLog.samplingPercent) },
      },
    };
  }
}
