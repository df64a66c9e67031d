import { connect as h2connect } from 'node:http2';
import { testPki } from '../helpers/pki.js';
import { bothMeshes } from './h2-mesh.js';

/**
 * ADV8-7. A client that cancels a response in progress (RST_STREAM CANCEL: a gRPC deadline,
 * a user gone) says nothing about the endpoint: it must not count as the endpoint's
 * failure (outlier detection, failure accrual; classify.ts: cancelled).
 *
 * What happened on `mux`: the HTTP/1.1 pool fails the response body when the client goes
 * away (it closes the virtual connection), and pick-endpoint counted any body error as an
 * upstream reset: every cancelled call was a failure of the endpoint, so clients
 * cancelling could get healthy endpoints ejected. On `h2` node:http2 ended the cancelled
 * body cleanly (a success).
 */
const pki = testPki();
const meshes = bothMeshes(pki);

interface EndpointView { readonly failures: number; readonly successes: number }

describe.each(['mux', 'h2'])('protocol.meshHttp2 %s', (t) => {
  test('responses cancelled by the client mid-body are not failures of the endpoint', async () => {
    const mesh = meshes.get(t)!;
    mesh.handler = (s) => {
      s.respond({ ':status': 200 });
      const tick = setInterval(() => (s.destroyed ? clearInterval(tick) : s.write('x')), 20);
    };
    const c = h2connect(`http://127.0.0.1:${mesh.client.outboundPort}`);
    try {
      for (let i = 0; i < 3; i++) {
        const r = c.request({ ':authority': 'app', ':path': '/stream' });
        r.on('error', () => undefined);
        await new Promise((res) => r.once('data', res));
        r.close(8);
        await new Promise((res) => r.on('close', res));
      }
    } finally {
      c.close();
    }
    // The outcome is reported when the attempt's body closes, a moment after the client's reset.
    await new Promise((r) => setTimeout(r, 200));
    const all = (await (await fetch(`http://127.0.0.1:${mesh.client.adminPort}/clusters`)).json()) as Record<string, { endpoints: EndpointView[] }>;
    const views = Object.values(all).flatMap((c) => c.endpoints);
    expect(views.map((e) => e.failures)).toEqual([0]);
  });
});
