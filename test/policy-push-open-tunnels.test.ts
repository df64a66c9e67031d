import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { createServer } from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { recordingTcpApp, type RecordingTcpApp as TcpApp } from './helpers/recording-tcp-app.js';
import { metric } from './helpers/admin-metric.js';
import { until } from './helpers/until.js';
import { parseInboundPolicy } from '../contract/parse.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * An AuthorizationPolicy push while tunnels are open (docs/policy.md, "Open tunnels when
 * the policy changes"; prior art istio/ztunnel#772): each open tunnel is judged again with
 * what it was admitted with, and the ones now denied are closed at once, both sides; the
 * ones still allowed keep flowing. Mesh TCP tunnels (a peer's CONNECT to an opaque port),
 * WebSockets from peers (HTTP/1.1 upgrade over the multiplexed transport, and HTTP/2
 * extended CONNECT), a plaintext opaque splice and a plaintext WebSocket on a PERMISSIVE
 * port. Real sidecars, real mTLS, a real `ws` client; original destinations are injected.
 */
const pki = testPki();
const CIP = '10.96.0.31';
let server: Proxy, client: Proxy, clientH2: Proxy, other: Proxy;
let tcp: TcpApp;
let wsApp: { port: number; close(): Promise<void> };
let wsServer: WebSocketServer;
let outboundDst: { address: string; port: number } | undefined;
let redirect = 0;
const logs: string[] = [];

/** An echo app that says hello, recording per connection what it got and whether it closed. */
beforeAll(async () => {
  tcp = await recordingTcpApp('hi\n');
  const http = createServer();
  wsServer = new WebSocketServer({ server: http });
  wsServer.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${String(m)}`)));
  wsApp = await listenOnLoopback(http);
  // PERMISSIVE: the same sidecar takes the plaintext cases (inboundOriginalDst stands in for iptables).
  server = await startProxy({
    pki, serviceAccount: 'db', logs, inboundOriginalDst: () => ({ address: '127.0.0.1', port: redirect }),
    config: { policy: { mtls: { mode: 'PERMISSIVE' } }, protocol: { opaquePorts: [tcp.port] } },
  });
  const services = [
    meshService('db', 7000, [{ appPort: tcp.port, proxy: server }], { protocol: 'opaque', clusterIPs: [CIP] }),
    meshService('ws', 80, [{ appPort: wsApp.port, proxy: server }], { protocol: 'http1' }),
  ];
  const originalDst = () => outboundDst;
  [client, clientH2, other] = await Promise.all([
    startProxy({ pki, serviceAccount: 'client', services, originalDst }),
    // HTTP/1.1 carried as HTTP/2 between the sidecars: a WebSocket is an extended CONNECT stream (RFC 8441).
    startProxy({ pki, serviceAccount: 'client-h2', services, originalDst, config: { protocol: { meshHttp1: 'h2' } } }),
    startProxy({ pki, serviceAccount: 'other', services, originalDst }),
  ]);
});

afterAll(async () => {
  await Promise.all([client.close(), clientH2.close(), other.close()]);
  await server.close();
  wsServer.close();
  await Promise.all([tcp.close(), wsApp.close()]);
});

beforeEach(() => push([]));

function push(authorizationPolicies: Record<string, unknown>[], jwtRules: Record<string, unknown>[] = []): void {
  const inboundPolicy = parseInboundPolicy({ mtls: { mode: 'PERMISSIVE' }, authorizationPolicies, jwtRules }, 'policy');
  server.applySnapshot({ version: `v${Date.now()}`, source: 'test', services: server.snapshot.services, inboundPolicy });
}

/** A TCP connection to `port`, recording what comes back and whether it closed. */
function open(port: number): { socket: Socket; state: { out: string; closed: boolean } } {
  const socket = netConnect(port, '127.0.0.1');
  const state = { out: '', closed: false };
  socket.on('data', (d: Buffer) => (state.out += d.toString('latin1')));
  socket.on('close', () => (state.closed = true));
  socket.on('error', () => undefined);
  return { socket, state };
}

/** An opaque tunnel through `via`'s outbound to db:7000 (CONNECT to the server sidecar), once the app's hello came back. */
async function meshTunnel(via: Proxy): Promise<ReturnType<typeof open> & { app: TcpApp['conns'][number] }> {
  outboundDst = { address: CIP, port: 7000 };
  const before = tcp.conns.length;
  const t = open(via.outboundPort);
  expect(await until(() => t.state.out === 'hi\n', 3000)).toBe(true);
  return { ...t, app: tcp.conns[before] };
}

/** Bytes written now reach the app (and its echo comes back). */
async function flows(t: Awaited<ReturnType<typeof meshTunnel>>, what: string): Promise<boolean> {
  t.socket.write(what);
  return until(() => t.app.data.endsWith(what) && t.state.out.endsWith(what), 3000);
}

/** A WebSocket to `path` through `via` (or straight to the server's inbound, plaintext), open and echoing. */
async function webSocket(port: number, path: string, headers: Record<string, string> = {}): Promise<{ ws: WebSocket; got: string[]; closed: () => boolean }> {
  outboundDst = undefined;
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers: { host: 'ws', ...headers } });
  const got: string[] = [];
  let closed = false;
  ws.on('message', (m) => got.push(String(m)));
  ws.on('close', () => (closed = true));
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (_q, res) => reject(new Error(`status ${res.statusCode ?? 0}`)));
  });
  ws.send('one');
  expect(await until(() => got.includes('echo:one'), 3000)).toBe(true);
  return { ws, got, closed: () => closed };
}

const closedBy = (p: Proxy, reason: string, kind: string) => metric(p, new RegExp(`wren_tunnels_closed_total\\{reason="${reason}",kind="${kind}"\\} (\\d+)`));
const logLine = (policy: string) => logs.find((l) => l.includes('open tunnel closed: the new policy denies it') && l.includes(policy));

test('mesh TCP tunnel: a DENY push for its caller closes it at once, both sides; another caller\'s tunnel keeps flowing', async () => {
  const before = await closedBy(server, 'authorization', 'tcp');
  const denied = await meshTunnel(client);
  const kept = await meshTunnel(other);
  expect(await flows(denied, 'before;')).toBe(true);

  push([{ name: 'default/deny-client', action: 'DENY', rules: [{ from: [{ source: { principals: ['*/sa/client'] } }] }] }]);
  // At once, both sides: the app's end too (the splice's 30 s half-close grace is not waited out).
  expect(await until(() => denied.state.closed && denied.app.closed, 2000)).toBe(true);
  expect(denied.app.data).toBe('before;');
  expect(await flows(kept, 'after;')).toBe(true);
  expect(kept.state.closed).toBe(false);
  expect(await closedBy(server, 'authorization', 'tcp')).toBe(before + 1);
  // Logged at info with the deciding policy and its rule.
  expect(logLine('default/deny-client')).toMatch(/"effectivePolicyId":"ns\[default\]-policy\[deny-client\]-rule\[0\]"/);
  // And among the recent denials the dashboard's "why" view shows, marked as a tunnel closed.
  expect(server.ownDecisions().denials.at(-1)).toMatchObject({ policy: 'default/deny-client', action: 'DENY', principal: client.tls.spiffeId, port: tcp.port, effectivePolicyId: 'ns[default]-policy[deny-client]-rule[0]', closedTunnel: 'tcp' });
  kept.socket.destroy();
});

test('removing the ALLOW that admitted a tunnel closes it; a push that still allows it leaves it alone', async () => {
  const allow = (principals: string[]) => [{ name: 'default/allow-db', action: 'ALLOW', rules: [{ from: [{ source: { principals } }] }] }];
  push(allow(['*/sa/client', '*/sa/other']));
  const t = await meshTunnel(client);
  const kept = await meshTunnel(other);
  // Another policy, the same answer for both: nothing is closed.
  push([...allow(['*/sa/client', '*/sa/other']), { name: 'default/deny-mallory', action: 'DENY', rules: [{ from: [{ source: { principals: ['*/sa/mallory'] } }] }] }]);
  expect(await flows(t, 'still;')).toBe(true);

  push(allow(['*/sa/other']));
  expect(await until(() => t.state.closed && t.app.closed, 2000)).toBe(true);
  expect(t.app.data).toBe('still;');
  expect(await flows(kept, 'after;')).toBe(true);
  expect(logs.some((l) => l.includes('open tunnel closed') && l.includes('no-allow-policy-matched'))).toBe(true);
  kept.socket.destroy();
});

test('WebSockets from peers (multiplexed HTTP/1.1 and HTTP/2 extended CONNECT): closed when a push denies their path and upgrade; one on another path stays', async () => {
  const before = await closedBy(server, 'authorization', 'upgrade');
  const viaMux = await webSocket(client.outboundPort, '/chat');
  const viaH2 = await webSocket(clientH2.outboundPort, '/chat');
  const kept = await webSocket(client.outboundPort, '/feed');

  // Judged with the request each was admitted with: path, and the upgrade protocol the listeners keep out of the header map.
  push([{ name: 'default/no-chat', action: 'DENY', rules: [{ to: [{ operation: { paths: ['/chat'] } }], when: [{ key: 'request.headers[upgrade]', values: ['websocket'] }] }] }]);
  expect(await until(() => viaMux.closed() && viaH2.closed(), 2000)).toBe(true);
  kept.ws.send('two');
  expect(await until(() => kept.got.includes('echo:two'), 3000)).toBe(true);
  expect(kept.closed()).toBe(false);
  expect(await closedBy(server, 'authorization', 'upgrade')).toBe(before + 2);
  expect(logLine('default/no-chat')).toMatch(/"path":"\/chat"/);
  kept.ws.terminate();
});

test('a WebSocket admitted with a JWT is judged again with its verified token: a DENY on its request principal closes it, another user\'s stays', async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const iss = 'https://issuer.example';
  const jwtRules = [{ issuer: iss, jwks: JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] }) }];
  const bearer = async (sub: string) => ({
    authorization: `Bearer ${await new SignJWT({ sub }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(iss).setExpirationTime('10m').sign(privateKey)}`,
  });
  push([], jwtRules);
  const alice = await webSocket(client.outboundPort, '/chat', await bearer('alice'));
  const bob = await webSocket(client.outboundPort, '/chat', await bearer('bob'));

  // Only the token (verified when the upgrade was admitted) tells the two apart: same peer, port and path.
  push([{ name: 'default/no-alice', action: 'DENY', rules: [{ from: [{ source: { requestPrincipals: [`${iss}/alice`] } }] }] }], jwtRules);
  expect(await until(() => alice.closed(), 2000)).toBe(true);
  bob.ws.send('two');
  expect(await until(() => bob.got.includes('echo:two'), 3000)).toBe(true);
  expect(bob.closed()).toBe(false);
  expect(logLine('default/no-alice')).toBeDefined();
  bob.ws.terminate();
});

test('plaintext on a PERMISSIVE port: an opaque splice and a WebSocket are closed when a push denies unauthenticated callers', async () => {
  redirect = tcp.port;
  const before = tcp.conns.length;
  const splice = open(server.inboundPort);
  expect(await until(() => splice.state.out === 'hi\n', 3000)).toBe(true);
  const app = tcp.conns[before];
  redirect = wsApp.port;
  const ws = await webSocket(server.inboundPort, '/chat');
  const mesh = await meshTunnel(client);

  push([{ name: 'default/mtls-only', action: 'DENY', rules: [{ from: [{ source: { notPrincipals: ['*'] } }] }] }]);
  expect(await until(() => splice.state.closed && app.closed && ws.closed(), 2000)).toBe(true);
  // The mesh caller has a principal: its tunnel is still allowed.
  expect(await flows(mesh, 'mesh;')).toBe(true);
  expect(logLine('default/mtls-only')).toContain('(unauthenticated)');
  mesh.socket.destroy();
});

test('an upgrade admitted before the push and answered 101 after it is refused 403, never switched', async () => {
  // An app that answers 101 after 300 ms: the push lands while the upgrade is at the app.
  const got: string[] = [];
  const slow = await listenOnLoopback(
    createNetServer((s) => {
      s.on('error', () => undefined);
      s.on('data', (d: Buffer) => got.push(d.toString('latin1')));
      s.once('data', () => setTimeout(() => s.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n'), 300));
    }),
  );
  try {
    redirect = slow.port;
    const c = open(server.inboundPort);
    c.socket.write('GET /chat HTTP/1.1\r\nhost: web\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\nearly;');
    expect(await until(() => got.length > 0, 3000)).toBe(true);
    push([{ name: 'default/deny-all', action: 'DENY', rules: [{}] }]);
    expect(await until(() => c.state.closed, 3000)).toBe(true);
    expect(c.state.out).toMatch(/^HTTP\/1\.1 403 /);
    expect(c.state.out.toLowerCase()).toContain('wren-proxy-error: forbidden');
    // The bytes held behind the head never reached the app.
    expect(got.join('')).not.toContain('early;');
  } finally {
    await slow.close();
  }
});
