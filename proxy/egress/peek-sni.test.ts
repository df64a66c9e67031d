import { createServer, connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { systemClock } from '../../common/clock.js';
import { parseSni, peekSni } from './peek-sni.js';

/** The first bytes a real TLS client (node:tls) sends, and the server side socket that got them. */
async function clientHello(servername: string | undefined): Promise<{ hello: Buffer; server: Socket; close(): void }> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const got = new Promise<{ hello: Buffer; server: Socket }>((resolve) =>
    srv.once('connection', (s: Socket) => {
      s.once('data', (d: Buffer) => {
        s.pause();
        s.unshift(d);
        resolve({ hello: d, server: s });
      });
    }),
  );
  const client = tlsConnect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port, ...(servername ? { servername } : {}) });
  client.on('error', () => undefined);
  const r = await got;
  return { ...r, close: () => { client.destroy(); r.server.destroy(); srv.close(); } };
}

test('the SNI of a real ClientHello, lower case; none: ""', async () => {
  const a = await clientHello('API.Example.com');
  expect(parseSni(a.hello)).toBe('api.example.com');
  a.close();
  const b = await clientHello(undefined);
  expect(parseSni(b.hello)).toBe('');
  b.close();
});

test('incomplete records ask for more; other bytes are not a ClientHello', async () => {
  const a = await clientHello('api.example.com');
  for (const n of [0, 1, 4, 5, 40, a.hello.length - 1]) expect(parseSni(a.hello.subarray(0, n))).toBe('need-more');
  a.close();
  expect(parseSni(Buffer.from('GET / HTTP/1.1\r\n'))).toBeNull();
  expect(parseSni(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x02, 0, 0, 1, 0]))).toBeNull(); // a ServerHello
  expect(parseSni(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff]))).toBeNull(); // longer than a record may be
});

test('peekSni reads the hello without consuming it (the bytes are still there for the splice)', async () => {
  const a = await clientHello('api.example.com');
  expect(await peekSni(a.server, 1000, systemClock)).toBe('api.example.com');
  const again = await new Promise<Buffer>((r) => { a.server.once('data', r); a.server.resume(); });
  expect(again.equals(a.hello)).toBe(true);
  a.close();
});

test('peekSni gives up after the timeout (a client that sends nothing) and on plain bytes', async () => {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const accepted = new Promise<Socket>((r) => srv.once('connection', r));
  const c = netConnect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port });
  const s = await accepted;
  const t0 = Date.now();
  expect(await peekSni(s, 100, systemClock)).toBeUndefined();
  expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
  c.write('SSH-2.0-OpenSSH\r\n');
  expect(await peekSni(s, 1000, systemClock)).toBeUndefined();
  c.destroy();
  s.destroy();
  srv.close();
});
