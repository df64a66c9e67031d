import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import type { Headers } from '../http/headers.js';
import { clientIdentity } from './client-identity.js';
import { forwardedFor } from './forwarded-for.js';

/** The headers a layer hands to the service below it. */
function through(layer: ReturnType<typeof forwardedFor>): (headers: Headers, source: { address: string; identity: string }) => Promise<Headers> {
  let seen: Headers = {};
  const svc = layer((req) => {
    seen = req.headers;
    return Promise.resolve({} as ProxyResponse);
  });
  return async (headers, source) => {
    await svc({ headers, source } as unknown as ProxyRequest);
    return seen;
  };
}

describe('forwardedFor', () => {
  test('appends the client address (a v4-mapped one as v4); a new value when the list or the address changes', async () => {
    const f = through(forwardedFor());
    expect((await f({}, { address: '::ffff:10.0.0.7', identity: '' }))['x-forwarded-for']).toBe('10.0.0.7');
    const a = (await f({ 'x-forwarded-for': '203.0.113.9' }, { address: '10.0.0.7', identity: '' }))['x-forwarded-for'];
    const b = (await f({ 'x-forwarded-for': '203.0.113.9' }, { address: '10.0.0.7', identity: '' }))['x-forwarded-for'];
    expect(a).toBe('203.0.113.9, 10.0.0.7');
    expect(b).toBe(a);
    // Either part changing makes a new value.
    expect((await f({ 'x-forwarded-for': '203.0.113.10' }, { address: '10.0.0.7', identity: '' }))['x-forwarded-for']).toBe('203.0.113.10, 10.0.0.7');
    expect((await f({ 'x-forwarded-for': '203.0.113.10' }, { address: '10.0.0.8', identity: '' }))['x-forwarded-for']).toBe('203.0.113.10, 10.0.0.8');
    expect((await f({ 'x-forwarded-for': ['198.51.100.1', '203.0.113.10'] }, { address: '10.0.0.8', identity: '' }))['x-forwarded-for']).toBe('198.51.100.1, 203.0.113.10, 10.0.0.8');
  });
});

describe('clientIdentity', () => {
  test("sets XFCC from the verified peer only, replacing a caller's; a new value when either identity changes", async () => {
    let self = 'spiffe://cluster.local/ns/default/sa/web';
    const f = through(clientIdentity(() => self));
    const peer = { address: '10.0.0.7', identity: 'spiffe://cluster.local/ns/default/sa/client' };
    const forged = { 'x-forwarded-client-cert': 'By=x;URI=spiffe://cluster.local/ns/kube-system/sa/admin', 'x-app': 'kept' };
    const first = await f(forged, peer);
    expect(first).toEqual({ 'x-forwarded-client-cert': `By=${self};URI=${peer.identity}`, 'x-app': 'kept' });
    expect((await f({}, peer))['x-forwarded-client-cert']).toBe(first['x-forwarded-client-cert']);
    // No verified peer (a plaintext port): none at all, a forged one removed.
    expect(await f({ ...forged }, { address: '10.0.0.7', identity: '' })).toEqual({ 'x-app': 'kept' });
    // Our certificate rotated to another identity; another caller.
    self = 'spiffe://cluster.local/ns/default/sa/web-v2';
    expect((await f({}, peer))['x-forwarded-client-cert']).toBe(`By=${self};URI=${peer.identity}`);
    expect((await f({}, { ...peer, identity: 'spiffe://cluster.local/ns/default/sa/other' }))['x-forwarded-client-cert']).toBe(`By=${self};URI=spiffe://cluster.local/ns/default/sa/other`);
  });
});
