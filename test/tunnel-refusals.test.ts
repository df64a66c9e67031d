import { connect as h2connect, type ClientHttp2Session, type OutgoingHttpHeaders } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { ERROR_TABLE, type ErrorCode } from '../proxy/errors/proxy-error.js';
import type { Proxy } from '../proxy/proxy.js';
import { closedPort as freeClosedPort } from './helpers/closed-port.js';

/**
 * The inbound's answers to CONNECT streams it gives no tunnel (a peer's opaque TCP, a
 * relayed TCP health check, a plaintext CONNECT) go through the one error mapping
 * (tunnelRefusal): the table's status and `wren-proxy-error` label, and no body, which
 * the peer would relay to its client as if the app had sent it.
 */
const pki = testPki();
let server: Proxy;
let closedPort: number;

beforeAll(async () => {
  closedPort = await freeClosedPort();
  server = await startProxy({
    pki,
    serviceAccount: 'web',
    config: { policy: { mtls: { mode: 'PERMISSIVE' } }, protocol: { detectTimeoutMs: 300, opaquePorts: [closedPort] } },
  });
});

afterAll(async () => {
  await server.close();
});

function peer(): ClientHttp2Session {
  const id = pki.issue('default', 'client');
  const s = h2connect(`https://127.0.0.1:${server.inboundPort}`, { key: id.keyPem, cert: id.certChainPem, ca: id.trustBundlePem, rejectUnauthorized: false });
  s.on('error', () => undefined);
  return s;
}

/** Sends a CONNECT on `session`; resolves with the response status, its wren-proxy-error header and any body bytes. */
function connect(session: ClientHttp2Session, headers: OutgoingHttpHeaders): Promise<{ status: number; error: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const st = session.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${closedPort}`, ...headers });
    let status = 0;
    let error: string | undefined;
    let body = '';
    st.on('response', (h) => {
      status = Number(h[':status']);
      error = h['wren-proxy-error'] as string | undefined;
    });
    st.on('data', (d: Buffer) => (body += d.toString()));
    st.on('close', () => (status ? resolve({ status, error, body }) : reject(new Error('no response'))));
    st.on('error', () => undefined);
    st.end();
  });
}

const mapped = (code: ErrorCode) => ({ status: ERROR_TABLE[code].http, error: code.toLowerCase().replace(/_/g, '-'), body: '' });

test('a peer CONNECT naming a port it may not reach: bad-request from the table, no body', async () => {
  const s = peer();
  try {
    expect(await connect(s, { 'wren-target-port': '15000' })).toEqual(mapped('BAD_REQUEST'));
    // The metrics port is one of the proxy's own (Istio's 15020): a peer cannot tunnel to it through the app address.
    expect(await connect(s, { 'wren-target-port': '15020' })).toEqual(mapped('BAD_REQUEST'));
    expect(await connect(s, { 'wren-target-port': 'nope' })).toEqual(mapped('BAD_REQUEST'));
  } finally {
    s.close();
  }
});

test('a peer CONNECT to an app port nobody listens on: connect-refused from the table, no body', async () => {
  const s = peer();
  try {
    expect(await connect(s, { 'wren-target-port': String(closedPort) })).toEqual(mapped('CONNECT_REFUSED'));
  } finally {
    s.close();
  }
});

test('a relayed TCP health check of a closed app port: connect-refused from the table', async () => {
  const s = peer();
  try {
    expect(await connect(s, { 'wren-target-port': String(closedPort), 'wren-health-check': '1' })).toEqual(mapped('CONNECT_REFUSED'));
  } finally {
    s.close();
  }
});

test('a plaintext (h2c) CONNECT on a PERMISSIVE port: bad-request from the table, and the proxy keeps serving', async () => {
  const s = h2connect(`http://127.0.0.1:${server.inboundPort}`);
  s.on('error', () => undefined);
  try {
    expect(await connect(s, { 'wren-target-port': String(closedPort) })).toEqual(mapped('BAD_REQUEST'));
    expect(await connect(s, {})).toEqual(mapped('BAD_REQUEST'));
  } finally {
    s.close();
  }
});
