import { createServer, connect, type ClientHttp2Session, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { releaseOnClose } from './release-on-close.js';

let server: Http2Server;
let session: ClientHttp2Session;
let serverStream: Promise<ServerHttp2Stream>;

beforeEach(async () => {
  server = createServer();
  serverStream = new Promise((resolve) =>
    server.once('stream', (s) => {
      releaseOnClose(s);
      s.respond({ ':status': 200 });
      s.end('ok');
      resolve(s);
    }),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  session = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});

afterEach(async () => {
  session.close();
  await new Promise((r) => server.close(r));
});

test('a closed stream keeps no listener but a no-op error handler, and every close listener still runs', async () => {
  const stream = session.request({ ':path': '/' }, { endStream: true });
  releaseOnClose(stream);
  const ran: string[] = [];
  stream.on('response', () => ran.push('response'));
  stream.once('close', () => ran.push('close-1'));
  stream.once('close', () => ran.push('close-2'));
  stream.resume();
  await new Promise((r) => stream.once('end', r));
  await new Promise((r) => setImmediate(r));
  expect(ran).toEqual(['response', 'close-1', 'close-2']);
  for (const s of [stream, await serverStream]) {
    expect(s.eventNames()).toEqual(['error']);
    expect(s.listenerCount('error')).toBe(1);
    // A late error is swallowed, not thrown.
    expect(() => s.emit('error', new Error('late'))).not.toThrow();
  }
});
