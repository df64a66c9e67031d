import { request } from 'node:http';
import { connect } from 'node:http2';
import type { Proxy } from '../proxy/proxy.js';
import { testPki } from './helpers/pki.js';
import { meshService, startProxy } from './helpers/proxy.js';

/**
 * A sidecar's own error answered to a gRPC-Web call (PROTOCOL-WEB.md) carries the
 * request's gRPC-Web content type back: a gRPC-Web client reads a response as gRPC-Web
 * only under one (grpc-web in text mode expects `-web-text`), and the Trailers-Only answer
 * (grpc-status in the headers, no body) needs no framing or base64 in either mode. Raw
 * HTTP/1.1 (what browsers' gRPC-Web mostly is) and HTTP/2 requests to the outbound port of
 * a client sidecar for a service with no endpoints: 503 no-healthy-upstream, grpc-status 14.
 */
const pki = testPki();
let client: Proxy;

beforeAll(async () => {
  client = await startProxy({ pki, serviceAccount: 'client', services: [meshService('web', 80, [], { protocol: 'grpc' })] });
});

afterAll(async () => {
  await client.close();
});

interface Answer { status: number; contentType: string | undefined; grpcStatus: string | undefined; body: string }

const body = (ct: string) => (ct.includes('-text') ? Buffer.from(Buffer.alloc(5).toString('base64')) : Buffer.alloc(5));

function h1Call(ct: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: client.outboundPort, method: 'POST', path: '/wren.test.Echo/Unary', agent: false, headers: { host: 'web', 'content-type': ct, 'x-grpc-web': '1' } },
      (res) => {
        let b = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (b += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], grpcStatus: res.headers['grpc-status'] as string | undefined, body: b }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body(ct));
  });
}

function h2Call(ct: string): Promise<Answer> {
  const session = connect(`http://127.0.0.1:${client.outboundPort}`);
  return new Promise<Answer>((resolve, reject) => {
    session.on('error', reject);
    const st = session.request({ ':method': 'POST', ':path': '/wren.test.Echo/Unary', ':authority': 'web', 'content-type': ct, 'x-grpc-web': '1' });
    let b = '';
    let head: Omit<Answer, 'body'> | undefined;
    st.setEncoding('utf8');
    st.on('response', (h) => (head = { status: Number(h[':status']), contentType: h['content-type'], grpcStatus: h['grpc-status'] as string | undefined }));
    st.on('data', (c: string) => (b += c));
    st.on('end', () => (head ? resolve({ ...head, body: b }) : reject(new Error('no response headers'))));
    st.on('error', reject);
    st.end(body(ct));
  }).finally(() => session.close());
}

const trailersOnly = (contentType: string): Answer => ({ status: 200, contentType, grpcStatus: '14', body: '' });

describe.each([
  ['HTTP/1.1', h1Call],
  ['HTTP/2', h2Call],
])('over %s', (_proto, call) => {
  test.each(['application/grpc-web', 'application/grpc-web+proto', 'application/grpc-web-text', 'application/grpc-web-text+proto'])(
    'a %s call gets its own content type on a Trailers-Only error',
    async (ct) => {
      expect(await call(ct)).toEqual(trailersOnly(ct));
    },
  );

  test('parameters are dropped, the media type kept', async () => {
    expect(await call('application/grpc-web-text; charset=utf-8')).toEqual(trailersOnly('application/grpc-web-text'));
  });
});

test('a plain gRPC call still gets application/grpc', async () => {
  expect(await h2Call('application/grpc')).toEqual(trailersOnly('application/grpc'));
});
