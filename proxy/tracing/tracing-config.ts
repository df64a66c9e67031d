import { readFileSync } from 'node:fs';
import { bool, duration, fail, map, num, obj, optional, str, type Parser } from '../../common/schema.js';
import type { SpanLimits } from '@opentelemetry/sdk-trace-base';
import type { BatchSettings } from './span-batcher.js';

/**
 * The proxy config's `tracing` section (docs/observability.md, Tracing): where spans go and
 * how many may wait. Who is sampled is the `telemetry.tracing` section's (and the control
 * plane's) business; without a collector sampling is still decided and propagated, and no
 * span is recorded.
 */
/** Longest string attribute value and span name (characters), as the access log caps its path. */
export const MAX_SPAN_STRING = 1024;

/**
 * The span limits of the sidecar's and the control plane's tracer providers, every one given.
 * @opentelemetry/sdk-trace-base (loadDefaultConfig, reconfigureLimits) takes a limit left out
 * from OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, OTEL_ATTRIBUTE_COUNT_LIMIT,
 * OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT, OTEL_SPAN_EVENT_COUNT_LIMIT and the like: variables
 * set on every container of a pod for the app's own SDK would otherwise drop or cut the
 * attributes of the mesh's spans (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=1 leaves one). Wren's
 * config alone says what it exports, as for the exporter (otlp-exporter.ts). The counts are
 * the OpenTelemetry specification's defaults (128); strings are capped at MAX_SPAN_STRING.
 */
export const SPAN_LIMITS: Readonly<Required<SpanLimits>> = {
  attributeValueLengthLimit: MAX_SPAN_STRING,
  attributeCountLimit: 128,
  linkCountLimit: 128,
  eventCountLimit: 128,
  attributePerEventCountLimit: 128,
  attributePerLinkCountLimit: 128,
};

export interface TracingConfig extends BatchSettings {
  readonly collector: CollectorConfig | undefined;
  /** How long shutdown waits for queued spans to be exported. */
  readonly shutdownTimeoutMs: number;
}

export interface CollectorConfig {
  /** host:port of an OTLP/gRPC collector (TraceService/Export). */
  readonly address: string;
  /** Plaintext gRPC; only when set (default: TLS, verified by `tls.caFile` or the system roots). */
  readonly plaintext: boolean;
  readonly tls: { readonly caFile: string | undefined; readonly certFile: string | undefined; readonly keyFile: string | undefined };
}

/**
 * The collector's TLS files (`tracing.collector.tls`), read: null for a file not given. A
 * file that cannot be read throws an error naming its field, which `wren proxy` turns into
 * a one-line config error (exit 2), at start and by --check, and an embedded Proxy.start
 * passes on as it is.
 */
export function readCollectorTls(tls: CollectorConfig['tls']): { readonly ca: Buffer | null; readonly cert: Buffer | null; readonly key: Buffer | null } {
  const read = (field: 'caFile' | 'certFile' | 'keyFile'): Buffer | null => {
    const file = tls[field];
    if (file === undefined) return null;
    try {
      return readFileSync(file);
    } catch (e) {
      throw new Error(`cannot read tracing.collector.tls.${field}: ${(e as Error).message}`, { cause: e });
    }
  };
  return { ca: read('caFile'), cert: read('certFile'), key: read('keyFile') };
}

/**
 * The OpenTelemetry OTLP exporter's environment variables (OTEL_EXPORTER_OTLP_ENDPOINT,
 * _HEADERS, _CERTIFICATE, _CLIENT_KEY, _CLIENT_CERTIFICATE, _INSECURE, _COMPRESSION,
 * _TIMEOUT, and each _TRACES_ one). The sidecar's collector is its config's
 * `tracing.collector` alone (span-recorder.ts hides these from the exporter), as Istio's
 * Envoy takes its collector from the mesh config and never from the environment; OTel
 * SDK configuration gives explicit configuration precedence over the environment.
 */
export const OTLP_ENV_PREFIX = 'OTEL_EXPORTER_OTLP_';

/** The names (never the values: a _HEADERS one carries credentials) of the OTLP exporter variables set in `env`. */
export function otlpEnvNames(env: NodeJS.ProcessEnv = process.env): string[] {
  return Object.keys(env).filter((k) => k.startsWith(OTLP_ENV_PREFIX)).sort();
}

export const parseTracingConfig: Parser<TracingConfig> = map(
  obj({
    collector: optional(
      obj({
        address: str({ pattern: /^[^\s:]+:\d+$|^\[[0-9a-fA-F:.]+\]:\d+$/ }),
        plaintext: bool(false),
        tls: obj({ caFile: optional(str()), certFile: optional(str()), keyFile: optional(str()) }),
      }),
    ),
    // The OpenTelemetry SDK's BatchSpanProcessor defaults (OTEL_BSP_*).
    maxQueueSize: num({ int: true, min: 1, max: 1 << 20, default: 2048 }),
    maxExportBatchSize: num({ int: true, min: 1, max: 1 << 16, default: 512 }),
    scheduledDelayMs: duration(5000),
    exportTimeoutMs: duration(30_000),
    shutdownTimeoutMs: duration(5000),
  }),
  (t, path) => {
    if (t.maxExportBatchSize > t.maxQueueSize) fail(`${path}.maxExportBatchSize`, `must not exceed maxQueueSize (${t.maxQueueSize})`);
    if (t.exportTimeoutMs < 1) fail(`${path}.exportTimeoutMs`, 'must be at least 1ms');
    const c = t.collector;
    if (c) {
      const tls = c.tls;
      if (c.plaintext && (tls.caFile ?? tls.certFile ?? tls.keyFile) !== undefined) fail(`${path}.collector.plaintext`, 'plaintext and tls are exclusive');
      if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) fail(`${path}.collector.tls.${tls.certFile === undefined ? 'certFile' : 'keyFile'}`, 'a client certificate needs both certFile and keyFile');
    }
    return Object.freeze(t);
  },
);
