/**
 * The soak's mixed load: a fixed rate of HTTP/1.1 (keep-alive), gRPC unary (node:http2,
 * checked by grpc-status) and TCP (a fresh connection per exchange, echo checked) through
 * the outbound sidecar, with every failure counted by kind. Scheduled against the clock
 * (requests due since the start are sent on each tick), so a stalled tick catches up
 * instead of lowering the rate.
 */
import { Agent, request } from 'node:http';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect as tcpConnect } from 'node:net';

const TIMEOUT_MS = 5000;
/** Out of every 10 requests: 6 HTTP/1.1, 3 gRPC, 1 TCP. */
const MIX = ['h1', 'grpc', 'h1', 'tcp', 'h1', 'grpc', 'h1', 'h1', 'grpc', 'h1'] as const;
type Kind = (typeof MIX)[number];

export interface Window {
  ok: Record<Kind, number>;
  /** "kind: reason" → count. */
  errors: Map<string, number>;
}

const emptyWindow = (): Window => ({ ok: { h1: 0, grpc: 0, tcp: 0 }, errors: new Map() });

export class MixedLoad {
  private window = emptyWindow();
  private sent = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 16 });
  private h2: ClientHttp2Session | undefined;
  private inFlight = 0;

  /** `tcp` is the address the app dials (redirected to the outbound by iptables), or null when TCP is not measured. */
  constructor(private readonly o: { outboundPort: number; rate: number; tcp: { host: string; port: number } | null }) {}

  start(): void {
    const t0 = performance.now();
    this.timer = setInterval(() => {
      const due = Math.floor(((performance.now() - t0) / 1000) * this.o.rate);
      for (; this.sent < due; this.sent++) {
        const kind = MIX[this.sent % MIX.length];
        if (kind === 'tcp' && !this.o.tcp) continue;
        this.inFlight++;
        const done = (err?: string) => {
          this.inFlight--;
          if (err) this.window.errors.set(`${kind}: ${err}`, (this.window.errors.get(`${kind}: ${err}`) ?? 0) + 1);
          else this.window.ok[kind]++;
        };
        if (kind === 'h1') this.h1(done);
        else if (kind === 'grpc') this.grpc(done);
        else this.tcp(done);
      }
    }, 5);
  }

  /** The counts since the last call. */
  take(): Window {
    const w = this.window;
    this.window = emptyWindow();
    return w;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    const end = performance.now() + TIMEOUT_MS + 1000;
    while (this.inFlight > 0 && performance.now() < end) await new Promise((r) => setTimeout(r, 20));
    this.agent.destroy();
    this.h2?.close();
  }

  private h1(done: (err?: string) => void): void {
    const req = request({ host: '127.0.0.1', port: this.o.outboundPort, path: '/', headers: { host: 'web' }, agent: this.agent, timeout: TIMEOUT_MS }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode === 200 ? undefined : `HTTP ${res.statusCode} ${res.headers['wren-proxy-error'] ?? ''}`.trim()));
      res.on('error', (e) => done(e.message));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => done((e as NodeJS.ErrnoException).code ?? e.message));
    req.end();
  }

  private session(): ClientHttp2Session {
    if (!this.h2 || this.h2.closed || this.h2.destroyed) {
      this.h2 = h2connect(`http://127.0.0.1:${this.o.outboundPort}`);
      this.h2.on('error', () => undefined);
    }
    return this.h2;
  }

  private grpc(done: (err?: string) => void): void {
    let settled = false;
    const finish = (err?: string) => {
      if (!settled) {
        settled = true;
        done(err);
      }
    };
    const s = this.session().request({ ':method': 'POST', ':path': '/wren.test.Echo/Unary', ':authority': 'echo:50051', 'content-type': 'application/grpc', te: 'trailers' });
    s.setTimeout(TIMEOUT_MS, () => s.close());
    let status: string | undefined;
    let http = 0;
    s.on('response', (h) => {
      http = Number(h[':status']);
      status = (h['grpc-status'] as string | undefined) ?? status;
    });
    s.on('trailers', (t) => (status = t['grpc-status'] as string | undefined));
    s.on('error', (e) => finish((e as NodeJS.ErrnoException).code ?? e.message));
    s.on('close', () => finish(status === '0' ? undefined : status ? `grpc-status ${status}` : `no grpc-status (HTTP ${http}, RST ${s.rstCode})`));
    s.resume();
    // EchoRequest{message:"ping"} in a gRPC length-prefixed frame.
    s.end(Buffer.from([0, 0, 0, 0, 6, 0x0a, 4, 0x70, 0x69, 0x6e, 0x67]));
  }

  private tcp(done: (err?: string) => void): void {
    const { host, port } = this.o.tcp!;
    const sock = tcpConnect({ host, port });
    let got = '';
    let settled = false;
    const finish = (err?: string) => {
      if (settled) return;
      settled = true;
      sock.destroy();
      done(err);
    };
    sock.setTimeout(TIMEOUT_MS, () => finish('timeout'));
    sock.on('connect', () => sock.write('ping\n'));
    sock.on('data', (d) => {
      got += d.toString();
      if (got === 'ping\n') finish();
      else if (got.length >= 5) finish('wrong echo');
    });
    sock.on('error', (e) => finish((e as NodeJS.ErrnoException).code ?? e.message));
    sock.on('close', () => finish(got === 'ping\n' ? undefined : 'closed early'));
  }
}
