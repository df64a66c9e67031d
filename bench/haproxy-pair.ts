/**
 * A reference pair that is not Node: two HAProxy processes doing the same two hops as
 * the Wren pair (HTTP/1.1 in, HTTP/2 over mutual TLS between them, HTTP/1.1 to the
 * backend), and gRPC (h2c in, the same HTTP/2 over mutual TLS, h2c to the backend's gRPC
 * port, chosen by content-type on the inbound side). The issue quotes "a haproxy pair adds 0.34 ms at p99" as the scale; running
 * one in the same harness, on the same cores, tells how much of a figure is the machine
 * and the harness and how much is the proxy. The benchmark installs haproxy when it is
 * missing and it runs as root (bench/tools.ts).
 *
 * Each HAProxy runs one thread (`nbthread 1`), like a Node sidecar. The outbound side
 * verifies the inbound side's chain against the mesh CA (no SPIFFE ID check: HAProxy
 * matches DNS names, not URI SANs), and the inbound side requires a client certificate
 * from the same CA.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { freePort } from './node-process.js';
import { join } from 'node:path';

export interface HaproxyPair {
  readonly outboundPort: number;
  /** The outbound's h2c port for gRPC. */
  readonly grpcPort: number;
  /** outbound, inbound */
  readonly pids: readonly [number, number];
}

function untilListening(port: number, child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 10_000;
    const onExit = (code: number | null) => reject(new Error(`haproxy exited with ${code}`));
    child.once('exit', onExit);
    const attempt = () => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        child.off('exit', onExit);
        resolve();
      });
      c.once('error', () => (Date.now() > deadline ? reject(new Error(`haproxy never listened on ${port}`)) : setTimeout(attempt, 50)));
    };
    attempt();
  });
}

const GLOBAL = ['global', '  nbthread 1', '  maxconn 4096', 'defaults', '  mode http', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s', '  http-reuse always', ''];

/**
 * Starts the pair in `dir`; every child goes into `into` so the benchmark stops them.
 * `client` and `server` are the two workloads' certificate and key files.
 */
export async function startHaproxyPair(
  into: ChildProcess[],
  dir: string,
  opts: { backendPort: number; grpcBackendPort: number; caFile: string; client: { certFile: string; keyFile: string }; server: { certFile: string; keyFile: string } },
): Promise<HaproxyPair> {
  const pem = async (name: string, w: { certFile: string; keyFile: string }) => {
    const file = join(dir, `haproxy-${name}.pem`);
    await writeFile(file, (await readFile(w.certFile, 'utf8')) + (await readFile(w.keyFile, 'utf8')), { mode: 0o600 });
    return file;
  };
  const [outPort, grpcOutPort, inPort] = [await freePort(), await freePort(), await freePort()];
  const inbound = [
    ...GLOBAL,
    'frontend inbound',
    `  bind 127.0.0.1:${inPort} ssl crt ${await pem('server', opts.server)} ca-file ${opts.caFile} verify required alpn h2`,
    '  use_backend grpc if { req.hdr(content-type) -m beg application/grpc }',
    '  default_backend app',
    'backend app',
    `  server app 127.0.0.1:${opts.backendPort}`,
    'backend grpc',
    `  server app 127.0.0.1:${opts.grpcBackendPort} proto h2`,
    '',
  ];
  const outbound = [
    ...GLOBAL,
    'frontend outbound',
    `  bind 127.0.0.1:${outPort}`,
    // HTTP/2 has no reason phrase, so HAProxy's HTTP/1.1 status line comes out as
    // "HTTP/1.1 200 " and h2load (whose parser reports the status from the reason
    // callback) counts the request as failed; the backend here always answers 200.
    '  http-response set-status 200 reason OK if { status 200 }',
    '  default_backend peer',
    'frontend grpc',
    `  bind 127.0.0.1:${grpcOutPort} proto h2`,
    '  default_backend peer',
    'backend peer',
    `  server peer 127.0.0.1:${inPort} ssl crt ${await pem('client', opts.client)} ca-file ${opts.caFile} verify required alpn h2`,
    '',
  ];
  const run = async (name: string, lines: string[], port: number) => {
    const cfg = join(dir, `haproxy-${name}.cfg`);
    await writeFile(cfg, lines.join('\n'));
    const child = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', process.env.WREN_BENCH_LOG ? 'inherit' : 'ignore'] });
    into.push(child);
    await untilListening(port, child);
    return child.pid!;
  };
  const inPid = await run('inbound', inbound, inPort);
  const outPid = await run('outbound', outbound, outPort);
  return { outboundPort: outPort, grpcPort: grpcOutPort, pids: [outPid, inPid] };
}
