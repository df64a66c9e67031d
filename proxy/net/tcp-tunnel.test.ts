import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { splice } from './tcp-tunnel.js';
import { systemClock } from '../../common/clock.js';

const servers: Server[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

async function listen(s: Server): Promise<number> {
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

/**
 * The upstream closes first (an HTTP/1.0-style server, `connection: close`), then the client
 * sends a few more bytes and its FIN: a TLS client's close_notify alert answering the
 * server's. The pipe into the closed upstream paused the client's side; its bytes sat unread
 * in front of its end, so the splice never saw the client close and held both the socket and
 * the istio_tcp_connections_closed_total count for the 30 s meant for a peer that has not
 * finished.
 */
test('when the upstream has closed, the client\'s last bytes and FIN are read: the splice ends when the client does, not 30 s later', async () => {
  const upstreamPort = await listen(createServer((s) => s.end('bye\n')));
  let upstreamClosed!: () => void;
  const upstreamGone = new Promise<void>((r) => (upstreamClosed = r));
  let done!: (bytes: { aToB: number; bToA: number }) => void;
  const finished = new Promise<{ aToB: number; bToA: number }>((r) => (done = r));
  const proxyPort = await listen(
    createServer({ allowHalfOpen: true }, (a) => {
      sockets.push(a);
      const b = connect({ host: '127.0.0.1', port: upstreamPort });
      sockets.push(b);
      b.on('close', () => upstreamClosed());
      splice(a, b, done);
    }),
  );
  const client = connect({ host: '127.0.0.1', port: proxyPort, allowHalfOpen: true });
  sockets.push(client);
  let got = '';
  client.on('data', (d: Buffer) => (got += d.toString()));
  await upstreamGone;
  client.end('late');
  // Well inside the 30 s the splice allows a peer that has not finished (and the test timeout).
  const outcome = await Promise.race([finished, new Promise<'held'>((r) => setTimeout(() => r('held'), 4000))]);
  expect(outcome).not.toBe('held');
  expect(got).toBe('bye\n');
});

/**
 * One side half-closed (the upstream ended and closed) and the other never closes its own:
 * after the wait the splice leaves it (30 s; SpliceIdle.halfCloseMs here) both are destroyed,
 * and the limit is told, as wren_limit_exceeded_total{limit="tcp-half-close-timeout"}.
 * Before, the teardown was counted nowhere: a client that never closed looked like any
 * connection that ended well.
 */
/**
 * A client through a splice to an upstream that says `bye` and ends at once; the splice has
 * no idle bound (ms 0), so only the half-close wait (`halfCloseMs`) can end it. The client
 * allows half-open and has ended nothing.
 */
async function halfClosedUpstream(halfCloseMs: number): Promise<{ client: Socket; finished: Promise<void>; fired: string[] }> {
  const upstreamPort = await listen(createServer((s) => s.end('bye\n')));
  const fired: string[] = [];
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const proxyPort = await listen(
    createServer({ allowHalfOpen: true }, (a) => {
      sockets.push(a);
      const b = connect({ host: '127.0.0.1', port: upstreamPort });
      sockets.push(b);
      splice(a, b, () => done(), { ms: 0, clock: systemClock, fired: (limit) => fired.push(limit), halfCloseMs });
    }),
  );
  const client = connect({ host: '127.0.0.1', port: proxyPort, allowHalfOpen: true });
  sockets.push(client);
  return { client, finished, fired };
}

test('a client that never closes after the upstream half-closed is torn down after the wait, counted as tcp-half-close-timeout', async () => {
  // The client keeps its side open after the FIN.
  const { client, finished, fired } = await halfClosedUpstream(200);
  client.on('error', () => undefined);
  let got = '';
  client.on('data', (d: Buffer) => (got += d.toString()));
  const start = performance.now();
  const outcome = await Promise.race([finished.then(() => 'done'), new Promise<'held'>((r) => setTimeout(() => r('held'), 4000))]);
  expect(outcome).toBe('done');
  expect(performance.now() - start).toBeGreaterThanOrEqual(150);
  expect(fired).toEqual(['tcp-half-close-timeout']);
  expect(got).toBe('bye\n');
});

test('a client that closes after the upstream half-closed ends the splice with no limit counted', async () => {
  const { client, finished, fired } = await halfClosedUpstream(2000);
  client.on('end', () => client.end());
  client.resume();
  await finished;
  expect(fired).toEqual([]);
});
