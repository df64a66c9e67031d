/**
 * What multiplexing the mesh hop could buy a Node pair (issue 12: "measure both and pick by
 * the numbers"): bench/bytes-pair.ts, but every request between the two halves travels on
 * ONE mutual-TLS connection, framed as [stream id u32][length u32][HTTP/1.1 bytes], and the
 * frames of one event-loop turn leave in one write (one TLS record, one syscall), as an
 * HTTP/2 sender coalesces frames. Client- and app-facing connections are as in the bytes
 * pair (one exchange at a time each). No flow control, no cancellation, no features: a
 * measurement of the transport's cost, not a design.
 *
 * `outbound PORT UPSTREAM_PORT CERT KEY CA` / `inbound APP_PORT CERT KEY CA`; prints "ready PORT".
 */
import { createServer, connect as tcpConnect, type Socket, type AddressInfo } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { readFileSync } from 'node:fs';
import { messageLength } from './message-length.js';

const [role, upstreamPortArg, certFile, keyFile, caFile] = process.argv.slice(2);
const upstreamPort = Number(upstreamPortArg);
const tls = { cert: readFileSync(certFile), key: readFileSync(keyFile), ca: readFileSync(caFile) };


/** Frames written to `sock` in one turn go out together (cork, uncork on the next tick). */
function framer(sock: Socket): (id: number, msg: Buffer) => void {
  let corked = false;
  const uncork = (): void => {
    corked = false;
    sock.uncork();
  };
  return (id, msg) => {
    if (!corked) {
      corked = true;
      sock.cork();
      process.nextTick(uncork);
    }
    const h = Buffer.allocUnsafe(8);
    h.writeUInt32BE(id, 0);
    h.writeUInt32BE(msg.length, 4);
    sock.write(h);
    sock.write(msg);
  };
}

/** Calls `onFrame(id, payload)` for each whole frame read from `sock`. */
function deframe(sock: Socket, onFrame: (id: number, payload: Buffer) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    while (buf.length >= 8) {
      const len = buf.readUInt32BE(4);
      if (buf.length < 8 + len) break;
      onFrame(buf.readUInt32BE(0), buf.subarray(8, 8 + len));
      buf = buf.subarray(8 + len);
    }
  });
}

if (role === 'outbound') {
  const mesh = tlsConnect({ host: '127.0.0.1', port: upstreamPort, ...tls, checkServerIdentity: () => undefined });
  mesh.setNoDelay(true);
  const send = framer(mesh);
  const waiting = new Map<number, { client: Socket; done: () => void }>();
  let nextId = 1;
  deframe(mesh, (id, res) => {
    const w = waiting.get(id);
    if (!w) return;
    waiting.delete(id);
    w.client.write(res);
    w.done();
  });
  const server = createServer((client) => {
    client.setNoDelay(true);
    let pending: Buffer = Buffer.alloc(0);
    let busy = false;
    const next = (): void => {
      if (busy) return;
      const n = messageLength(pending);
      if (n < 0) return;
      const req = pending.subarray(0, n);
      pending = pending.subarray(n);
      busy = true;
      const id = nextId++;
      waiting.set(id, { client, done });
      send(id, req);
    };
    const done = (): void => {
      busy = false;
      next();
    };
    client.on('data', (d: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, d]) : d;
      next();
    });
    client.on('error', () => client.destroy());
  });
  mesh.once('secureConnect', () => server.listen(0, '127.0.0.1', () => process.stdout.write(`ready ${(server.address() as AddressInfo).port}\n`)));
} else {
  const idle: Socket[] = [];
  // A pooled app connection the app closed (its keep-alive timeout) leaves the pool.
  const openApp = (): Socket => {
    const s = tcpConnect(upstreamPort, '127.0.0.1').setNoDelay(true);
    s.on('close', () => {
      const i = idle.indexOf(s);
      if (i >= 0) idle.splice(i, 1);
    });
    s.on('error', () => s.destroy());
    return s;
  };
  const server = createTlsServer({ ...tls, requestCert: true, rejectUnauthorized: true }, (mesh) => {
    mesh.setNoDelay(true);
    const send = framer(mesh);
    deframe(mesh, (id, req) => {
      const app = idle.pop() ?? openApp();
      let res: Buffer = Buffer.alloc(0);
      const onData = (d: Buffer): void => {
        res = res.length ? Buffer.concat([res, d]) : d;
        const n = messageLength(res);
        if (n < 0 || n > res.length) return;
        app.removeListener('data', onData);
        idle.push(app);
        send(id, res);
      };
      app.on('data', onData);
      app.write(req);
    });
    mesh.on('error', () => mesh.destroy());
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`ready ${(server.address() as AddressInfo).port}\n`));
}
// A clean exit on SIGTERM, so that a profiled run (WREN_BENCH_PROFILE) writes its profile.
process.on('SIGTERM', () => process.exit(0));
