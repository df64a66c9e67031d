/**
 * A bare node:http2 client, no Wren code: how many bytes per request survive a scavenge
 * and are promoted (docs/benchmarks.md, "Tail and memory"). Runs itself three ways:
 * `node dist/bench/h2-retention.js [node flags...]` starts a server process and a client
 * process (with the flags and --trace-gc-nvp), the client sends 2,000 warm-up requests and
 * then 20,000 with 4 in flight, and the parent sums the client's scavenges.
 * `WREN_RETENTION_CLIENT=forward` sends the same requests through Wren's `forwardH2`
 * (proxy/http/h2-forward.ts) instead, body read to its end as a sidecar does, so the two
 * show what Wren's stream lifecycle adds to node's own. The client's CPU time per request
 * (process.cpuUsage over the measured requests) is printed too.
 */
import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { forwardH2 } from '../proxy/http/h2-forward.js';
import type { ProxyRequest } from '../proxy/http/exchange.js';
import { ScavengeSums } from './gc-nvp.js';

const self = fileURLToPath(import.meta.url);
const REQUESTS = 20_000;

async function server(): Promise<void> {
  const srv = createServer();
  srv.on('stream', (s) => {
    s.respond({ ':status': 200 });
    s.end('x'.repeat(100));
  });
  srv.listen(0, '127.0.0.1', () => process.stdout.write(`${(srv.address() as AddressInfo).port}\n`));
}

async function client(port: number): Promise<void> {
  const session = connect(`http://127.0.0.1:${port}`);
  const bare = () =>
    new Promise<void>((resolve) => {
      const s = session.request({ ':path': '/' }, { endStream: true });
      s.resume();
      s.on('close', resolve);
    });
  // As a sidecar sends it: a fresh request object, its own abort signal, the body drained to its end.
  const forward = async () => {
    const req: ProxyRequest = {
      method: 'GET', scheme: 'http', authority: 'web', path: '/', headers: { 'user-agent': 'bench' }, body: null, trailers: () => undefined,
      origProto: 'HTTP/2', source: { address: '127.0.0.1', port: 1, identity: '' }, signal: new AbortController().signal, startedAt: 0,
    };
    const res = await forwardH2(session, req, req.headers);
    if (res.body) await new Promise((r) => res.body!.on('end', r).resume());
  };
  const one = process.env.WREN_RETENTION_CLIENT === 'forward' ? forward : bare;
  for (let i = 0; i < 2000; i++) await one();
  process.stderr.write('measuring\n');
  const cpu = process.cpuUsage();
  for (let i = 0; i < REQUESTS / 4; i++) await Promise.all([one(), one(), one(), one()]);
  const used = process.cpuUsage(cpu);
  process.stderr.write(`cpu ${((used.user + used.system) / REQUESTS).toFixed(1)}\n`);
  process.exit(0);
}

async function parent(flags: string[]): Promise<void> {
  const srv = spawn(process.execPath, [self, 'server'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((r) => srv.stdout.once('data', (d: Buffer) => r(d.toString().trim())));
  const cli = spawn(process.execPath, ['--trace-gc-nvp', ...flags, self, 'client', port], { stdio: ['ignore', 'pipe', 'pipe'] });
  let cpu = '?';
  const sum = new ScavengeSums();
  sum.counting = false;
  cli.stderr.on('data', (d: Buffer) => {
    sum.counting ||= d.toString().includes('measuring');
    cpu = /cpu ([\d.]+)/.exec(d.toString())?.[1] ?? cpu;
  });
  cli.stdout.setEncoding('latin1').on('data', sum.feed);
  await new Promise((r) => cli.once('exit', r));
  srv.kill();
  const what = process.env.WREN_RETENTION_CLIENT === 'forward' ? 'forwardH2' : 'bare node:http2';
  console.log(`${what}, node ${flags.join(' ') || '(default flags)'}: ${cpu} µs CPU and ${(sum.allocated / REQUESTS).toFixed(0)} B allocated per request; ${sum.scavenges} scavenges over ${REQUESTS} requests; per request ${(sum.promoted / REQUESTS).toFixed(0)} B promoted, ${(sum.survived / REQUESTS).toFixed(0)} B survived a scavenge; scavenge pauses ${sum.pause.toFixed(0)} ms in all`);
}

const [mode, arg] = process.argv.slice(2);
if (mode === 'server') await server();
else if (mode === 'client') await client(Number(arg));
else await parent(process.argv.slice(2));
