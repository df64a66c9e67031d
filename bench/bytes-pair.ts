/**
 * The floor of a Node pair (issue 12's "100-line probe"): HTTP/1.1 forwarded as bytes over
 * pooled keep-alive connections, mutual TLS between the two halves, no node:http objects
 * and none of Wren's features. It parses only what forwarding needs (the end of each head,
 * Content-Length) and understands nothing else: no chunked bodies, no upgrades, no errors
 * beyond closing the connection. What Wren costs above it is Wren's own work; what it costs
 * above HAProxy is Node's (its socket, TLS and event machinery) on this path.
 *
 * `outbound PORT UPSTREAM_PORT CERT KEY CA`: plaintext in, mTLS to the inbound half;
 * `inbound APP_PORT CERT KEY CA`: mTLS in (client certificate required), plaintext to the
 * app. Prints "ready PORT".
 */
import { createServer, connect as tcpConnect, type Socket, type AddressInfo } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { readFileSync } from 'node:fs';
import { messageLength } from './message-length.js';

const [role, upstreamPortArg, certFile, keyFile, caFile] = process.argv.slice(2);
const upstreamPort = Number(upstreamPortArg);
const tls = { cert: readFileSync(certFile), key: readFileSync(keyFile), ca: readFileSync(caFile) };


const idle: Socket[] = [];
const open = (): Socket => {
  const s = role === 'outbound'
    ? tlsConnect({ host: '127.0.0.1', port: upstreamPort, ...tls, checkServerIdentity: () => undefined })
    : tcpConnect(upstreamPort, '127.0.0.1');
  s.setNoDelay(true);
  // A pooled connection the other side closed (the app's keep-alive timeout) leaves the pool.
  s.on('close', () => {
    const i = idle.indexOf(s);
    if (i >= 0) idle.splice(i, 1);
  });
  s.on('error', () => s.destroy());
  return s;
};

/** One client connection: each whole request goes to a pooled upstream; its response's bytes go back as they come. */
function serve(client: Socket): void {
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
    const up = idle.pop() ?? open();
    let head: Buffer | null = Buffer.alloc(0);
    let left = -1;
    const onData = (d: Buffer): void => {
      client.write(d);
      if (head) {
        head = Buffer.concat([head, d]);
        const total = messageLength(head);
        if (total < 0) return;
        left = total - head.length;
        head = null;
      } else left -= d.length;
      if (left <= 0) {
        up.removeListener('data', onData);
        up.removeListener('error', onError);
        up.removeListener('close', onError);
        idle.push(up);
        busy = false;
        next();
      }
    };
    const onError = (): void => {
      client.destroy();
      up.destroy();
    };
    up.on('data', onData);
    up.on('error', onError);
    up.on('close', onError); // closed mid-exchange: the client's connection goes too
    up.write(req);
  };
  client.on('data', (d: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, d]) : d;
    next();
  });
  client.on('error', () => client.destroy());
}

const server = role === 'outbound' ? createServer(serve) : createTlsServer({ ...tls, requestCert: true, rejectUnauthorized: true }, serve);
server.listen(0, '127.0.0.1', () => process.stdout.write(`ready ${(server.address() as AddressInfo).port}\n`));
// A clean exit on SIGTERM, so that a profiled run (WREN_BENCH_PROFILE) writes its profile.
process.on('SIGTERM', () => process.exit(0));
