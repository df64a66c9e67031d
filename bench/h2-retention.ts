/**
 * A bare node:http2 client, no Wren code: how many bytes per request survive a scavenge
 * and are promoted (docs/benchmarks.md, "Tail and memory"). Runs itself three ways:
 * `node dist/bench/h2-retention.js [node flags...]` starts a server process and a client
 * process (with the flags and --trace-gc-nvp), the client sends 2,000 warm-up requests and
 * then 20,000 with 4 in flight, and the parent sums the client's scavenges.
 */
import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';

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
  const one = () =>
    new Promise<void>((resolve) => {
      const s = session.request({ ':path': '/' }, { endStream: true });
      s.resume();
      s.on('close', resolve);
    });
  for (let i = 0; i < 2000; i++) await one();
  process.stderr.write('measuring\n');
  for (let i = 0; i < REQUESTS / 4; i++) await Promise.all([one(), one(), one(), one()]);
  process.exit(0);
}

async function parent(flags: string[]): Promise<void> {
  const srv = spawn(process.execPath, [self, 'server'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((r) => srv.stdout.once('data', (d: Buffer) => r(d.toString().trim())));
  const cli = spawn(process.execPath, ['--trace-gc-nvp', ...flags, self, 'client', port], { stdio: ['ignore', 'pipe', 'pipe'] });
  let measuring = false;
  const sum = { scavenges: 0, promoted: 0, survived: 0, pause: 0 };
  cli.stderr.on('data', (d: Buffer) => (measuring ||= d.toString().includes('measuring')));
  let buf = '';
  cli.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const l of lines) {
      if (!measuring || !l.includes(' gc=s ')) continue;
      const kv = Object.fromEntries(l.split(' ').filter((x) => x.includes('=')).map((x) => x.split('=')));
      sum.scavenges++;
      sum.promoted += Number(kv.promoted);
      sum.survived += Number(kv.new_space_survived);
      sum.pause += Number(kv.pause);
    }
  });
  await new Promise((r) => cli.once('exit', r));
  srv.kill();
  console.log(`node ${flags.join(' ') || '(default flags)'}: ${sum.scavenges} scavenges over ${REQUESTS} requests; per request ${(sum.promoted / REQUESTS).toFixed(0)} B promoted, ${(sum.survived / REQUESTS).toFixed(0)} B survived a scavenge; scavenge pauses ${sum.pause.toFixed(0)} ms in all`);
}

const [mode, arg] = process.argv.slice(2);
if (mode === 'server') await server();
else if (mode === 'client') await client(Number(arg));
else await parent(process.argv.slice(2));
