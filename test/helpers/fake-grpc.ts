import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

const PROTO = fileURLToPath(new URL('../fixtures/echo.proto', import.meta.url));
const MAX = 16 * 1024 * 1024;
export const grpcOptions = { 'grpc.max_receive_message_length': MAX, 'grpc.max_send_message_length': MAX };

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type EchoClient = grpc.Client & Record<string, any>;

export function echoPackage(): { Echo: grpc.ServiceClientConstructor } {
  const def = protoLoader.loadSync(PROTO, { keepCase: false, longs: String, defaults: true });
  return (grpc.loadPackageDefinition(def) as unknown as { wren: { test: { Echo: grpc.ServiceClientConstructor } } }).wren.test;
}

export interface FakeGrpc {
  readonly port: number;
  /** Calls that reached the server, by type, in order ('unary', 'client-stream', 'server-stream', 'bidi'). */
  readonly started: string[];
  readonly cancelled: string[];
  close(): Promise<void>;
}

const callerOf = (md: grpc.Metadata): string => String(md.get('x-forwarded-client-cert')[0] ?? '');

/**
 * A gRPC backend with all four call types. `failCode` makes a call end with that status;
 * `delayMs` delays the (first) response; server-streams send `count` messages `delayMs` apart.
 * Calls that reached it are recorded in `started`, cancellations it saw in `cancelled`.
 */
export async function fakeGrpc(): Promise<FakeGrpc> {
  const server = new grpc.Server(grpcOptions);
  const cancelled: string[] = [];
  const started: string[] = [];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const impl: Record<string, (call: any, cb?: any) => void> = {
    Unary(call, cb) {
      started.push('unary');
      const r = call.request;
      call.on('cancelled', () => cancelled.push('unary'));
      const reply = () => {
        if (r.failCode) return cb({ code: r.failCode, details: `failed as asked (${r.failCode})`, metadata: trailerMd() });
        const md = new grpc.Metadata();
        md.set('x-echo-header', String(call.metadata.get('x-custom')[0] ?? ''));
        call.sendMetadata(md);
        cb(null, { message: r.message, payload: r.payload, caller: callerOf(call.metadata) }, trailerMd());
      };
      if (r.delayMs) setTimeout(reply, r.delayMs);
      else reply();
    },
    ClientStream(call, cb) {
      started.push('client-stream');
      let n = 0;
      let bytes = 0;
      call.on('data', (r: { payload: Buffer }) => {
        n++;
        bytes += r.payload.length;
      });
      call.on('end', () => cb(null, { message: `got ${n} messages, ${bytes} bytes`, caller: callerOf(call.metadata) }));
      call.on('cancelled', () => cancelled.push('client-stream'));
    },
    ServerStream(call) {
      started.push('server-stream');
      const r = call.request;
      let i = 0;
      call.on('cancelled', () => cancelled.push('server-stream'));
      const next = () => {
        if (call.cancelled) return;
        if (i >= r.count) {
          if (r.failCode) return call.emit('error', { code: r.failCode, details: 'stream failed as asked' });
          return call.end(trailerMd());
        }
        call.write({ message: r.message, index: i++ });
        setTimeout(next, r.delayMs || 0);
      };
      next();
    },
    Bidi(call) {
      started.push('bidi');
      call.on('data', (r: { message: string }) => call.write({ message: `echo ${r.message}`, caller: callerOf(call.metadata) }));
      call.on('end', () => call.end());
      call.on('cancelled', () => cancelled.push('bidi'));
    },
  };
  server.addService(echoPackage().Echo.service, impl);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { port, started, cancelled, close: () => new Promise<void>((r) => server.tryShutdown(() => r())) };
}

function trailerMd(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('x-trailer', 'done');
  return md;
}

/** A client that talks to `authority` through a sidecar's outbound port (h2c, prior knowledge). */
export function echoClient(outboundPort: number, authority: string): EchoClient {
  const { Echo } = echoPackage();
  return new Echo(`127.0.0.1:${outboundPort}`, grpc.credentials.createInsecure(), { ...grpcOptions, 'grpc.default_authority': authority }) as EchoClient;
}
