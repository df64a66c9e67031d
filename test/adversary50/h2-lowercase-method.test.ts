import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { testPki } from '../helpers/pki.js';
import { scrape } from '../helpers/admin-metric.js';
import { FLAG, FRAME, FrameReader, clientStart, frame, headerBlock } from '../helpers/h2-frames.js';
import { startH2Mesh, type H2Mesh } from '../adversary8/h2-mesh.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * A lower-case `:method` (`delete`). Methods are case-sensitive (RFC 9110 section 9.1) and
 * none is registered in lower case; an app that upper-cases what it gets (werkzeug does)
 * serves `delete` as the DELETE an AuthorizationPolicy denies or a route matches, which is
 * why the HTTP/1.1 parser refuses it (`lowercase-method`) and the frame-level server makes
 * it malformed. nghttp2 checks a :method only as a token, so on the node:http2 servers it
 * went through: the outbound with `outboundHttp2: node`, and the mTLS inbound, where a peer
 * sidecar picks HTTP/2 by ALPN whatever `meshHttp2` says (and an upgrade's method rides in
 * `wren-orig-method`). Now reset PROTOCOL_ERROR there too, counted and logged as bad-request.
 */
const pki = testPki();

/** One request of raw fields on a new connection; resolves with the RST_STREAM code, or 'answered'. */
function send(sock: Socket, fields: [string, string][]): Promise<number | 'answered'> {
  return new Promise((resolve) => {
    sock.on('error', () => undefined);
    const reader = new FrameReader((type, _flags, id, p) => {
      if (id !== 1) return;
      if (type === FRAME.RST_STREAM) resolve(p.readUInt32BE(0));
      else if (type === FRAME.HEADERS) resolve('answered');
    });
    sock.on('data', (d: Buffer) => reader.push(d));
    sock.write(Buffer.concat([clientStart(), frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, headerBlock(fields))]));
  });
}

async function badRequests(p: Proxy, direction: string): Promise<number> {
  return (await scrape(p, 'wren_proxy_errors_total')).find((s) => s.labels['direction'] === direction && s.labels['code'] === 'bad-request')?.value ?? 0;
}

async function peer(mesh: H2Mesh): Promise<Socket> {
  const cert = pki.issue('default', 'client');
  const sock = tlsConnect({ host: '127.0.0.1', port: mesh.server.inboundPort, key: cert.keyPem, cert: cert.certChainPem, ca: cert.trustBundlePem, ALPNProtocols: ['h2'], rejectUnauthorized: false });
  await new Promise((r) => sock.once('secureConnect', r));
  return sock;
}

describe.each(['frames', 'node'])('outboundHttp2 %s', (outboundHttp2) => {
  let mesh: H2Mesh;
  beforeAll(async () => {
    const protocol = { meshHttp2: 'h2', outboundHttp2 };
    mesh = await startH2Mesh(pki, 'h2', { client: { protocol }, server: { protocol } });
  });
  afterAll(() => mesh.close());

  test('an app\'s :method delete on the outbound: reset PROTOCOL_ERROR, counted; the app never sees it', async () => {
    const before = await badRequests(mesh.client, 'outbound');
    const sock = connect(mesh.client.outboundPort, '127.0.0.1');
    expect(await send(sock, [[':method', 'delete'], [':scheme', 'http'], [':path', '/lower'], [':authority', 'app']])).toBe(1);
    sock.destroy();
    expect(await badRequests(mesh.client, 'outbound')).toBe(before + 1);
    expect(mesh.closed.some((c) => c.path === '/lower')).toBe(false);
  });

  test('a peer\'s :method delete on the mTLS inbound (node:http2 whatever outboundHttp2 says): reset, counted; the app never sees it', async () => {
    const before = await badRequests(mesh.server, 'inbound');
    const sock = await peer(mesh);
    const target: [string, string] = ['wren-target-port', String(mesh.appPort)];
    expect(await send(sock, [[':method', 'delete'], [':scheme', 'http'], [':path', '/peer-lower'], [':authority', 'app'], target])).toBe(1);
    sock.destroy();
    expect(await badRequests(mesh.server, 'inbound')).toBe(before + 1);
    // A well-formed DELETE on the same inbound is served (the check is the case, not the method).
    const ok = await peer(mesh);
    expect(await send(ok, [[':method', 'DELETE'], [':scheme', 'http'], [':path', '/peer-upper'], [':authority', 'app'], target])).toBe('answered');
    ok.destroy();
    expect(mesh.closed.some((c) => c.path === '/peer-lower')).toBe(false);
  });

  test('a peer\'s upgrade (extended CONNECT) whose wren-orig-method is lower-case: reset, counted', async () => {
    const before = await badRequests(mesh.server, 'inbound');
    const sock = await peer(mesh);
    const fields: [string, string][] = [[':method', 'CONNECT'], [':protocol', 'websocket'], [':scheme', 'http'], [':path', '/ws'], [':authority', 'app'], ['wren-target-port', String(mesh.appPort)], ['wren-orig-method', 'delete']];
    // The inbound advertises SETTINGS_ENABLE_CONNECT_PROTOCOL; a raw peer need not wait for it to send.
    expect(await send(sock, fields)).toBe(1);
    sock.destroy();
    expect(await badRequests(mesh.server, 'inbound')).toBe(before + 1);
  });
});
