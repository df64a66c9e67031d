import { connect as netConnect, createServer, type Server, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * Opaque TCP half-close (RFC 9293 section 3.6: a FIN closes one direction only): every
 * path that splices bytes carries one side's FIN to the other and keeps the other
 * direction open. Two apps: `reply` reads to the client's FIN and only then answers
 * (`printf ping | nc -N`); `finFirst` says hello and FINs at once, and records what the
 * client still sends afterwards. Before: the client's bytes and FIN that arrived during
 * protocol detection were lost (the peek put them back after 'end': Readable destroys
 * the stream, ERR_STREAM_UNSHIFT_AFTER_END_EVENT), the inbound listener ended its side at
 * the client's FIN before dialling the app, and the upstream sockets ended theirs at the
 * app's FIN, so the client's later bytes were refused (write after end) and the tunnel torn down.
 */
const pki = testPki();
let server: Proxy, client: Proxy, strict: Proxy, permissive: Proxy;
let reply: Server, finFirst: Server, unknownReply: Server, unknownFinFirst: Server;
const ports = { reply: 0, finFirst: 0, unknownReply: 0, unknownFinFirst: 0 };
/** What each `finFirst`-kind app got after its own FIN, per connection in order. */
let late: Promise<string>[] = [];
let nextDst: { address: string; port: number } | undefined;
let inboundDst = 0;

const listen = async (s: Server): Promise<number> => {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return (s.address() as AddressInfo).port;
};
const replyApp = (): Server =>
  createServer({ allowHalfOpen: true }, (s) => {
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.on('end', () => s.end(`got:${got}`));
    s.on('error', () => undefined);
  });
const finFirstApp = (): Server =>
  createServer({ allowHalfOpen: true }, (s) => {
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.on('error', () => undefined);
    late.push(new Promise((r) => s.once('close', () => r(got))));
    s.end('hello\n');
  });

beforeAll(async () => {
  [reply, finFirst, unknownReply, unknownFinFirst] = [replyApp(), finFirstApp(), replyApp(), finFirstApp()];
  [ports.reply, ports.finFirst, ports.unknownReply, ports.unknownFinFirst] = await Promise.all([listen(reply), listen(finFirst), listen(unknownReply), listen(unknownFinFirst)]);
  const detect = { protocol: { detectTimeoutMs: 100 } };
  server = await startProxy({ pki, serviceAccount: 'db', config: detect });
  client = await startProxy({
    pki, serviceAccount: 'client', originalDst: () => nextDst, config: detect,
    services: [
      meshService('reply', 5000, [{ appPort: ports.reply, proxy: server }], { clusterIPs: ['10.96.0.20'], protocol: 'opaque' }),
      meshService('fin', 5001, [{ appPort: ports.finFirst, proxy: server }], { clusterIPs: ['10.96.0.21'], protocol: 'opaque' }),
      // Not declared: the outbound detects, so the client's FIN comes during detection.
      meshService('detected', 5002, [{ appPort: ports.reply, proxy: server }], { clusterIPs: ['10.96.0.22'] }),
    ],
  });
  strict = await startProxy({
    pki, serviceAccount: 'client', originalDst: () => nextDst,
    config: {
      ...detect,
      egress: { mode: 'REGISTRY_ONLY', externalServices: [{ name: 'default/db', hosts: ['db.example.com'], addresses: ['127.0.0.1/32'], ports: [{ number: ports.unknownReply, protocol: 'TCP' }, { number: ports.unknownFinFirst, protocol: 'TCP' }] }] },
    },
  });
  permissive = await startProxy({
    pki, serviceAccount: 'db2', inboundOriginalDst: () => ({ address: '127.0.0.1', port: inboundDst }),
    config: { ...detect, policy: { mtls: { mode: 'PERMISSIVE' } } },
  });
});

afterAll(async () => {
  await Promise.all([client.close(), strict.close(), permissive.close()]);
  await server.close();
  for (const s of [reply, finFirst, unknownReply, unknownFinFirst]) s.close();
});

/** Sends `ping` and half-closes at once; what came back before the connection closed. */
async function clientFinsFirst(port: number): Promise<string> {
  const s = netConnect({ port, host: '127.0.0.1', allowHalfOpen: true });
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString()));
  s.on('error', () => undefined);
  await once(s, 'connect');
  s.end('ping');
  await once(s, 'close');
  return got;
}

/** Waits for the app's FIN, then sends more and half-closes: what it got, and what the app got after its FIN. */
async function appFinsFirst(port: number): Promise<{ got: string; late: string }> {
  late = [];
  const s = netConnect({ port, host: '127.0.0.1', allowHalfOpen: true });
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString()));
  s.on('error', () => undefined);
  await once(s, 'end');
  s.end('late bytes');
  await once(s, 'close');
  expect(late).toHaveLength(1);
  return { got, late: await late[0] };
}

test('mesh opaque TCP (over the peer CONNECT stream): the client\'s FIN reaches the app, whose reply comes back', async () => {
  nextDst = { address: '10.96.0.20', port: 5000 };
  expect(await clientFinsFirst(client.outboundPort)).toBe('got:ping');
});

test('mesh opaque TCP: a FIN during outbound detection keeps the bytes read so far and is relayed', async () => {
  nextDst = { address: '10.96.0.22', port: 5002 };
  expect(await clientFinsFirst(client.outboundPort)).toBe('got:ping');
});

test('mesh opaque TCP: the app\'s FIN reaches the client, which can still send', async () => {
  nextDst = { address: '10.96.0.21', port: 5001 };
  expect(await appFinsFirst(client.outboundPort)).toEqual({ got: 'hello\n', late: 'late bytes' });
});

test('passthrough (ALLOW_ANY, unknown destination): half-close both ways', async () => {
  nextDst = { address: '127.0.0.1', port: ports.unknownReply };
  expect(await clientFinsFirst(client.outboundPort)).toBe('got:ping');
  nextDst = { address: '127.0.0.1', port: ports.unknownFinFirst };
  expect(await appFinsFirst(client.outboundPort)).toEqual({ got: 'hello\n', late: 'late bytes' });
});

test('REGISTRY_ONLY egress to a declared TCP address (detection, then the SNI peek, saw the FIN): half-close both ways', async () => {
  nextDst = { address: '127.0.0.1', port: ports.unknownReply };
  expect(await clientFinsFirst(strict.outboundPort)).toBe('got:ping');
  nextDst = { address: '127.0.0.1', port: ports.unknownFinFirst };
  expect(await appFinsFirst(strict.outboundPort)).toEqual({ got: 'hello\n', late: 'late bytes' });
});

test('plaintext opaque TCP on a PERMISSIVE inbound port: half-close both ways', async () => {
  inboundDst = ports.reply;
  expect(await clientFinsFirst(permissive.inboundPort)).toBe('got:ping');
  inboundDst = ports.finFirst;
  expect(await appFinsFirst(permissive.inboundPort)).toEqual({ got: 'hello\n', late: 'late bytes' });
});
