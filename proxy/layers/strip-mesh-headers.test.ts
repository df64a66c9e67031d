import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { stripMeshHeaders } from './strip-mesh-headers.js';

test('an app cannot forge peer metadata (wren-peer) or any other mesh header', async () => {
  let seen: Record<string, unknown> = {};
  const svc = stripMeshHeaders()((req) => {
    seen = { ...req.headers };
    return Promise.resolve({} as ProxyResponse);
  });
  await svc({ headers: { 'wren-peer': 'admin;kube-system;;;kubernetes.default', 'wren-target-port': '22', 'x-app': 'kept' } } as unknown as ProxyRequest);
  expect(seen).toEqual({ 'x-app': 'kept' });
});
