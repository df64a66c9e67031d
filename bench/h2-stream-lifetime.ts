/**
 * How long node keeps a closed HTTP/2 stream (docs/benchmarks.md, "gRPC: what the garbage
 * collector spends"): 200 warm-up requests on a bare node:http2 client and server in this
 * process, then 50 more whose streams (client and server side) are watched through WeakRefs.
 * Once every stream has closed and the event loop has turned, two minor GCs (scavenges) and
 * then full GCs are forced; the counts show which collection frees a closed stream. Run with
 * `node --expose-gc dist/bench/h2-stream-lifetime.js`.
 */
import { connect, createServer, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';

const gc = (globalThis as { gc?: (o?: { type: 'minor' | 'major' }) => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const served: WeakRef<ServerHttp2Stream>[] = [];
let watch = false;
const srv = createServer();
srv.on('stream', (s) => {
  if (watch) served.push(new WeakRef(s));
  s.respond({ ':status': 200 });
  s.end('x'.repeat(100));
});
await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
const session = connect(`http://127.0.0.1:${(srv.address() as AddressInfo).port}`);
const one = () =>
  new Promise<object>((resolve) => {
    const s = session.request({ ':path': '/' }, { endStream: true });
    s.resume();
    s.on('close', () => resolve(s));
  });
for (let i = 0; i < 200; i++) await one();
watch = true;
const sent: WeakRef<object>[] = [];
for (let i = 0; i < 50; i++) sent.push(new WeakRef(await one()));
watch = false;
const turn = () => new Promise((r) => setImmediate(r));
await new Promise((r) => setTimeout(r, 500));
for (let i = 0; i < 5; i++) await turn();
const alive = () => `${served.filter((r) => r.deref() !== undefined).length} server, ${sent.filter((r) => r.deref() !== undefined).length} client`;
gc({ type: 'minor' });
await turn();
gc({ type: 'minor' });
await turn();
console.log(`closed streams still alive of 50 each, after two scavenges: ${alive()}`);
gc();
await turn();
console.log(`after one full GC: ${alive()}`);
gc();
await new Promise((r) => setTimeout(r, 100));
gc();
await turn();
console.log(`after three full GCs: ${alive()}`);
session.close();
srv.close();
