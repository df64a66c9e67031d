import type { ChannelCredentials } from '@grpc/grpc-js';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { withoutEnvProxy } from '../../common/grpc-env-proxy.js';
import { OTLP_ENV_PREFIX } from './tracing-config.js';

/** CompressionAlgorithm.NONE of @opentelemetry/otlp-exporter-base (the exporter's dependency, not ours). */
const NO_COMPRESSION = 'none' as NonNullable<NonNullable<ConstructorParameters<typeof OTLPTraceExporter>[0]>['compression']>;

/**
 * An OTLP/gRPC trace exporter to `address`, configured by Wren's config alone (the sidecar's
 * `tracing.collector`, the control plane's `--trace-collector`). The exporter
 * (@opentelemetry/otlp-grpc-exporter-base, convertLegacyOtlpGrpcOptions) falls back to the
 * OTEL_EXPORTER_OTLP_* variables for whatever its options leave out and merges their headers
 * into every export's metadata: a _HEADERS variable meant for another collector (the app's
 * vendor API key, set on every container of the pod by an operator or a policy) would go to
 * the mesh's collector, and a _COMPRESSION one would gzip what a collector may not accept.
 * So the address, TLS and timeout are passed, compression is set (none), and the variables are
 * hidden while it is built: it reads them in its constructor only (the headers, endpoint,
 * compression and timeout at once; the TLS files and _INSECURE only when no credentials are
 * given, never here), and the constructor runs synchronously, so nothing else sees the
 * environment without them (a listener worker's process.env is its own thread's copy).
 * The callers log the names of those set (otlpEnvNames). test/tracing-otlp-env.test.ts holds
 * this to a collector that sees the request's headers.
 *
 * Nor does it go through a proxy the environment names (grpc_proxy, https_proxy, http_proxy:
 * common/grpc-env-proxy.ts). The exporter takes no channel options, and makes its channel
 * inside `export` (GrpcExporterTransport.send, synchronously: on the first export, and again
 * after it dropped a channel that timed out), so each export runs with those variables
 * hidden. test/grpc-env-proxy.test.ts holds this to a proxy that sees no connection.
 */
export function otlpTraceExporter(address: string, plaintext: boolean, credentials: ChannelCredentials, timeoutMs: number): SpanExporter {
  const hidden: [string, string][] = [];
  for (const k of Object.keys(process.env)) {
    if (!k.startsWith(OTLP_ENV_PREFIX)) continue;
    hidden.push([k, process.env[k]!]);
    delete process.env[k];
  }
  let exporter: OTLPTraceExporter;
  try {
    exporter = new OTLPTraceExporter({ url: `${plaintext ? 'http' : 'https'}://${address}`, credentials, timeoutMillis: timeoutMs, compression: NO_COMPRESSION });
  } finally {
    for (const [k, v] of hidden) process.env[k] = v;
  }
  return {
    export: (spans, done) => withoutEnvProxy(() => exporter.export(spans, done)),
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush(),
  };
}
