import { Registry } from 'prom-client';
import { ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { FakeClock, seededRandom } from '../../common/clock.js';
import { createLogger } from '../../common/logger.js';
import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { TelemetrySource, NO_TELEMETRY_OVERRIDES } from '../telemetry/telemetry-settings.js';
import { MeshTracer } from '../tracing/mesh-tracer.js';
import { parseTracingConfig } from '../tracing/tracing-config.js';
import { traceRequests } from './trace.js';

/**
 * Found by the adversary review (span-name-query-token).
 *
 * What a user does: a gRPC-Web client (content-type `application/grpc-web+proto`, which
 * isGrpc() counts as gRPC: it starts with `application/grpc`) puts its bearer token in the
 * query string, the one place a browser client can always put it:
 * `POST /shop.Cart/Get?access_token=<JWT>`. Tracing is on.
 *
 * What happens: layers/trace.ts names a gRPC span `req.path.slice(1)` and sets
 * `rpc.service` / `rpc.method` from the raw path, query string included, on both the
 * client and the server span. url.full is redacted and url.path drops the query, but the
 * span name and rpc.method carry the whole token to the collector.
 *
 * What should happen: "a token in the query string never reaches a span" (the project's
 * own test, proxy/layers/trace.test.ts; OpenTelemetry HTTP conventions, url.full: query
 * credentials redacted). The RPC conventions' span name is `{rpc.service}/{rpc.method}`,
 * which has no query: the path up to `?`.
 */
const OK: ProxyResponse = { status: 200, headers: { 'content-type': 'application/grpc-web+proto', 'grpc-status': '0' }, body: null, trailers: () => undefined };
const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLWFsaWNl';

function request(): ProxyRequest {
  return {
    method: 'POST', scheme: 'http', authority: 'cart:80', path: `/shop.Cart/Get?access_token=${JWT}`, headers: { 'content-type': 'application/grpc-web+proto' },
    body: null, trailers: () => undefined, origProto: 'HTTP/1.1', source: { address: '127.0.0.1', port: 1, identity: '' }, signal: new AbortController().signal, startedAt: 0,
  };
}

test.each(['client', 'server'] as const)('a query-string token of a gRPC-Web call never reaches the %s span (name or attributes)', async (kind) => {
  const spans: ReadableSpan[] = [];
  const exporter: SpanExporter = {
    export: (s, done) => {
      spans.push(...s);
      done({ code: ExportResultCode.SUCCESS });
    },
    shutdown: () => Promise.resolve(),
  };
  const t = new MeshTracer({
    config: parseTracingConfig(undefined, 'tracing'), settings: new TelemetrySource({ ...NO_TELEMETRY_OVERRIDES, tracing: { samplingPercent: 100 } }), random: seededRandom(1),
    clock: new FakeClock(), logger: createLogger({ level: 'error', sink: () => undefined }), registry: new Registry(), selfIdentity: () => 'spiffe://cluster.local/ns/default/sa/me',
    appAddress: '127.0.0.1', resource: { service: 'me', namespace: 'default', pod: '' }, exporter,
  });
  await t.ready; // the SDK loads on first use (span-recorder.ts)
  await traceRequests(t, kind, new FakeClock())(async () => OK)(request());
  await t.shutdown();
  expect(spans).toHaveLength(1);
  // Today: name "shop.Cart/Get?access_token=eyJ...", rpc.method "Get?access_token=eyJ...".
  expect(spans[0].name).not.toContain('c2lnbmF0dXJlLW9mLWFsaWNl');
  expect(JSON.stringify(spans[0].attributes)).not.toContain('c2lnbmF0dXJlLW9mLWFsaWNl');
});
