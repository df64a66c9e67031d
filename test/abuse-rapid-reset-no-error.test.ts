import { constants, createServer as createH2cServer } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { testPki } from './helpers/pki.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { startPairFor } from './helpers/pair-for-app.js';
import type { Proxy } from '../proxy/proxy.js';
import { clientStart, frame, FLAG, FRAME, request, rstStream } from './helpers/h2-frames.js';

/**
 * Issue 11 item 1 (found by the adversarial review): the premature-reset budget
 * (h2-session-guard.ts) counted a stream as reset only when its rstCode was not NO_ERROR,
 * so a rapid-reset attacker that sent RST_STREAM(NO_ERROR) instead of CANCEL was never
 * charged: HEADERS+RST_STREAM(NO_ERROR) pairs flow to the peer and the app with no
 * GOAWAY. A client-sent RST_STREAM of any code before the response ends is a reset
 * (RFC 9113 section 6.4; Envoy's premature-reset accounting does not look at the code).
 * The CANCEL variant (same test, other code) gets GOAWAY ENHANCE_YOUR_CALM.
 */
const pki = testPki();
let client: Proxy, close: () => Promise<void>;
const HOST = 'web.default.svc.cluster.local';

beforeAll(async () => {
  const h2 = createH2cServer();
  h2.on('stream', (st) => {
    st.on('error', () => undefined);
    st.respond({ ':status': 200 });
    st.end('ok');
  });
  ({ client, close } = await startPairFor(pki, await listenOnLoopback(h2)));
}, 20_000);

afterAll(() => close());


/** 3000 HEADERS+RST_STREAM pairs in batches of 100 on one connection; the GOAWAY code the proxy sent, if any. */
function abuse(code: number): Promise<{ goaway: number | null; sent: number }> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port: client.outboundPort });
    let goaway: number | null = null;
    let buf = Buffer.alloc(0);
    let id = 1;
    let sent = 0;
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
        const len = buf.readUIntBE(0, 3);
        if (buf[3] === FRAME.SETTINGS && !(buf[4] & FLAG.ACK)) s.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
        if (buf[3] === 7) goaway ??= buf.readUInt32BE(9 + 4);
        buf = buf.subarray(9 + len);
      }
    });
    s.on('error', () => undefined);
    const t = setTimeout(() => s.destroy(), 20_000);
    s.on('close', () => {
      clearTimeout(t);
      resolve({ goaway, sent });
    });
    const batch = () => {
      if (s.destroyed || goaway !== null) return;
      if (sent >= 3000) return void setTimeout(() => s.destroy(), 500);
      const f: Buffer[] = [];
      for (let i = 0; i < 100; i++, id += 2) f.push(request(id, HOST), rstStream(id, code));
      sent += 100;
      if (s.write(Buffer.concat(f))) setTimeout(batch, 1);
      else s.once('drain', batch);
    };
    s.once('connect', () => {
      s.write(clientStart());
      batch();
    });
  });
}

test('control: RST_STREAM(CANCEL) floods get GOAWAY ENHANCE_YOUR_CALM', async () => {
  const r = await abuse(constants.NGHTTP2_CANCEL);
  expect(r.goaway).toBe(constants.NGHTTP2_ENHANCE_YOUR_CALM);
}, 30_000);

test('RST_STREAM(NO_ERROR) floods are charged to the same premature-reset budget', async () => {
  const r = await abuse(constants.NGHTTP2_NO_ERROR);
  expect(r.goaway).toBe(constants.NGHTTP2_ENHANCE_YOUR_CALM);
}, 30_000);
