import { constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { MESH } from '../http/headers.js';

const { NGHTTP2_CANCEL } = constants;

/** A meshed endpoint: its app port, and the peer sidecar (inbound port and SPIFFE ID) in front of it. */
export interface MeshedTarget {
  readonly address: string;
  readonly port: number;
  readonly proxyPort: number;
  readonly identity: string;
}

/**
 * The pooled mTLS session to the target's sidecar (PeerPool.get: ALPN h2, the peer's
 * SPIFFE ID verified). Injected so this module does not depend on the outbound package.
 */
export type PeerSessions = (target: MeshedTarget, connectTimeoutMs: number) => Promise<ClientHttp2Session>;

/** The health-check user agent (Envoy sends `Envoy/HC`); the app sees it on every probe. */
export const PROBE_USER_AGENT = 'wren-health-check';

/** A gRPC health response is a few bytes; anything bigger than this is not one. */
const MAX_GRPC_RESPONSE_BYTES = 4096;

/**
 * Active health checks to meshed endpoints, sent the way user traffic goes: as HTTP/2
 * streams on the same mutual-TLS session to the peer sidecar, which authorizes them like
 * any request from our identity and delivers them to the app. A plaintext probe to the
 * app port would be redirected to the peer's inbound port by iptables and refused under
 * STRICT mTLS. Envoy likewise health-checks over the cluster's own transport socket
 * (TLS when the cluster uses TLS) unless `transport_socket_match_criteria` picks another.
 *
 * Every probe carries `wren-health-check: 1` so the inbound sidecar counts it apart from
 * user requests (the outbound side strips the header from what apps send; a mesh peer can
 * still set it, so the inbound counts apart only requests of exactly these shapes: see
 * proxy/layers/record-metrics.ts). The session's connect timeout is the probe timeout; `signal` (the checker's
 * timeout) cancels the stream.
 */
export class MeshProbes {
  constructor(private readonly sessions: PeerSessions) {}

  /** HTTP: GET `path` on the app port, delivered as HTTP/1.1 (Envoy's default health-check codec); 2xx is healthy. */
  http(t: MeshedTarget, path: string, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    return this.stream(t, timeoutMs, signal, { ':method': 'GET', ':scheme': 'http', ':path': path, [MESH.origProto]: 'HTTP/1.1' }, null, (status, s, done) => {
      s.resume();
      done(status >= 200 && status < 300);
    });
  }

  /** TCP: a CONNECT stream to the app port; the peer answers 200 only once it has connected to the app. */
  tcp(t: MeshedTarget, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    return this.stream(t, timeoutMs, signal, { ':method': 'CONNECT' }, null, (status, s, done) => {
      s.close(NGHTTP2_CANCEL);
      done(status === 200);
    });
  }

  /** gRPC: grpc.health.v1.Health/Check for `service` over HTTP/2; healthy only on grpc-status 0 and SERVING. */
  grpc(t: MeshedTarget, service: string, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    const head: OutgoingHttpHeaders = {
      ':method': 'POST', ':scheme': 'http', ':path': '/grpc.health.v1.Health/Check',
      'content-type': 'application/grpc', te: 'trailers', [MESH.origProto]: 'HTTP/2',
    };
    return this.stream(t, timeoutMs, signal, head, encodeHealthCheckRequest(service), (status, s, done, headers) => {
      if (status !== 200) return void (s.close(NGHTTP2_CANCEL), done(false));
      // Trailers-only response: grpc-status in the headers, no message.
      if (headers['grpc-status'] !== undefined) return void (s.resume(), done(false));
      const chunks: Buffer[] = [];
      let bytes = 0;
      s.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes > MAX_GRPC_RESPONSE_BYTES) return void (s.close(NGHTTP2_CANCEL), done(false));
        chunks.push(c);
      });
      // No trailers (not a gRPC response): the stream's 'close' fails the probe.
      s.once('trailers', (tr: IncomingHttpHeaders) => done(tr['grpc-status'] === '0' && decodeServing(Buffer.concat(chunks))));
    });
  }

  private stream(
    t: MeshedTarget,
    timeoutMs: number,
    signal: AbortSignal,
    head: OutgoingHttpHeaders,
    body: Buffer | null,
    onResponse: (status: number, s: ClientHttp2Stream, done: (ok: boolean) => void, headers: IncomingHttpHeaders) => void,
  ): Promise<boolean> {
    return new Promise((resolve) => {
      let settled = false;
      let stream: ClientHttp2Stream | null = null;
      const done = (ok: boolean) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        resolve(ok);
      };
      const onAbort = () => {
        stream?.close(NGHTTP2_CANCEL);
        done(false);
      };
      if (signal.aborted) return done(false);
      signal.addEventListener('abort', onAbort);
      this.sessions(t, timeoutMs).then(
        (session) => {
          if (settled) return;
          try {
            stream = session.request(
              {
                ':authority': `${t.address.includes(':') ? `[${t.address}]` : t.address}:${t.port}`,
                'user-agent': PROBE_USER_AGENT,
                ...head,
                [MESH.targetPort]: String(t.port),
                [MESH.healthCheck]: '1',
              },
              { endStream: body === null && head[':method'] !== 'CONNECT' },
            );
          } catch {
            return done(false);
          }
          const s = stream;
          s.on('error', () => done(false));
          s.once('close', () => done(false));
          s.once('response', (h: IncomingHttpHeaders) => onResponse(Number(h[':status']), s, done, h));
          if (body) s.end(body);
        },
        () => done(false),
      );
    });
  }
}

/** grpc.health.v1.HealthCheckRequest{service} as one length-prefixed gRPC message (field 1, string). */
export function encodeHealthCheckRequest(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  const msg = name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a]), varint(name.length), name]);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(msg.length, 1);
  return Buffer.concat([prefix, msg]);
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

/**
 * True when the body is one uncompressed gRPC message holding HealthCheckResponse with
 * status (field 1, varint) SERVING (1). Other fields are skipped as protobuf allows.
 */
export function decodeServing(body: Buffer): boolean {
  if (body.length < 5 || body[0] !== 0) return false;
  const len = body.readUInt32BE(1);
  if (body.length !== 5 + len) return false;
  let i = 5;
  let status = 0; // proto3 default UNKNOWN
  const readVarint = (): number => {
    let v = 0;
    let shift = 0;
    for (;;) {
      if (i >= body.length || shift > 28) throw new Error('bad varint');
      const b = body[i++];
      v |= (b & 0x7f) << shift;
      if (!(b & 0x80)) return v >>> 0;
      shift += 7;
    }
  };
  try {
    while (i < body.length) {
      const tag = readVarint();
      const field = tag >>> 3;
      const wire = tag & 7;
      if (wire === 0) {
        const v = readVarint();
        if (field === 1) status = v;
      } else if (wire === 2) {
        const n = readVarint(); // read first: `i += readVarint()` would add to the old i
        i += n;
      }
      else if (wire === 1) i += 8;
      else if (wire === 5) i += 4;
      else return false;
    }
  } catch {
    return false;
  }
  return i === body.length && status === 1;
}
