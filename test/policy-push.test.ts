import { Agent, request as httpRequest } from 'node:http';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ControlPlane } from '../control-plane/server.js';
import type { DirSource } from '../control-plane/sources/dir-source.js';
import { startDirControlPlane, type DirControlPlane } from './helpers/dir-control-plane.js';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { waitFor } from './control-plane-harness.js';
import { replaceFile } from './helpers/replace-file.js';
import type { Proxy } from '../proxy/proxy.js';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { meshedPodYaml } from './helpers/meshed-pod.js';

/**
 * Policies from a real control plane (directory source) to a real sidecar: a change
 * applies to the next request on connections already open; a bad object is rejected
 * with its field path and the last good policy stays; the Pod's labels select policies.
 */
const pki = testPki();
let plane: DirControlPlane, dir: string, cp: ControlPlane, source: DirSource, app: FakeApp, server: Proxy, client: Proxy;
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

const pod = meshedPodYaml('orders-0', 'demo', 'orders', { app: 'orders' });
const authz = (name: string, app: string, source: string, ports = '') => `apiVersion: policy.wren.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: demo }
spec:
  selector: { matchLabels: { app: ${app} } }
  action: ALLOW
  rules:
    - from: [{ source: ${source} }]
${ports ? `      to: [{ operation: { ports: ${ports} } }]\n` : ''}`;

beforeAll(async () => {
  plane = await startDirControlPlane({
    prefix: 'wren-policy-', trustDomain: 'cluster.local', seed: 3, mesh: { 'pod.yaml': pod },
    dirSource: { displayDir: 'mesh', watchDebounceMs: 10, rescanMs: 200 },
  });
  ({ cp, dir, source } = plane);
  app = await fakeApp('orders');
  server = await startProxy({
    pki, namespace: 'demo', serviceAccount: 'orders', controlPlane: `127.0.0.1:${cp.grpcPort}`, discoveryBackoff: { initialMs: 20, maxMs: 200 },
    // The proxy claims other labels; the control plane knows the Pod, whose labels win.
    labels: { app: 'not-orders' },
    inboundOriginalDst: () => ({ address: '127.0.0.1', port: app.port }),
  });
  await waitFor(() => server.snapshot.source.startsWith('control-plane:'), 'first snapshot');
  client = await startProxy({ pki, namespace: 'demo', serviceAccount: 'frontend', services: [meshService('orders', 80, [{ appPort: app.port, proxy: server }])] });
});

afterAll(async () => {
  agent.destroy();
  await client.close();
  await server.close();
  await plane.close(100);
  await app.close();
});

/** GET through the client sidecar on one kept-alive connection; reports whether the socket was reused. */
function get(path: string): Promise<{ status: number; reason: string | undefined; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host: 'orders' }, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, reason: res.headers['wren-authz-reason'] as string | undefined, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
}

const mtlsConnections = async (): Promise<number> => {
  const text = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
  return Number(/wren_inbound_connections_total\{tls="true",outcome="accepted"\} (\d+)/.exec(text)?.[1] ?? 0);
};
const policyNames = () => server.policy.authorizationPolicies.map((p) => p.name);

test('a pushed AuthorizationPolicy applies to the next request on the connections already open', async () => {
  expect(await get('/name')).toMatchObject({ status: 200 });
  const connections = await mtlsConnections();
  expect(connections).toBe(1);

  await replaceFile(join(dir, 'authz.yaml'), authz('orders-allow', 'orders', '{ namespaces: [ops] }'));
  await waitFor(() => policyNames().join() === 'demo/orders-allow', 'policy pushed');
  expect(await get('/name')).toEqual({ status: 403, reason: 'no-allow-policy-matched', reused: true });

  await replaceFile(join(dir, 'authz.yaml'), authz('orders-allow', 'orders', '{ principals: ["cluster.local/ns/demo/sa/frontend"] }'));
  await waitFor(() => server.policy.authorizationPolicies[0]?.rules[0].from[0].source.principals.length === 1, 'update pushed');
  expect(await get('/name')).toEqual({ status: 200, reason: undefined, reused: true });
  expect(await mtlsConnections()).toBe(connections);
});

test('the Pod labels select policies, not the labels the proxy sent', async () => {
  await replaceFile(join(dir, 'other.yaml'), authz('not-orders-deny-all', 'not-orders', '{ principals: ["*"] }').replace('action: ALLOW', 'action: DENY'));
  await replaceFile(join(dir, 'more.yaml'), authz('orders-ops', 'orders', '{ namespaces: [ops] }'));
  await waitFor(() => policyNames().includes('demo/orders-ops'), 'matching policy pushed');
  expect(policyNames()).toEqual(['demo/orders-allow', 'demo/orders-ops']);
  expect(await get('/name')).toMatchObject({ status: 200 });
});

test('a bad AuthorizationPolicy is rejected with its field path; the last good version stays', async () => {
  await replaceFile(join(dir, 'authz.yaml'), authz('orders-allow', 'orders', '{ principals: [nobody] }', '[http]'));
  await waitFor(() => source.errors().length > 0, 'rejection');
  expect(source.errors()).toEqual(['mesh/authz.yaml: spec.rules[0].to[0].operation.ports[0]: expected a port number 1-65535, got "http"']);
  // Give a (wrong) push time to arrive, then check the last good policy is still in force.
  await new Promise((r) => setTimeout(r, 100));
  expect(server.policy.authorizationPolicies[0].rules[0].from[0].source.principals).toEqual(['cluster.local/ns/demo/sa/frontend']);
  expect(await get('/name')).toMatchObject({ status: 200 });
});

test('a pushed PeerAuthentication opens the port to plaintext, which is then authorized as unauthenticated', async () => {
  const plain = () =>
    new Promise<{ status: number; reason: unknown } | 'closed'>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port: server.inboundPort, path: '/name', headers: { host: 'orders' }, agent: false }, (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, reason: res.headers['wren-authz-reason'] });
      });
      req.on('error', () => resolve('closed'));
      req.end();
    });
  expect(await plain()).toBe('closed');
  await replaceFile(join(dir, 'peer.yaml'), 'apiVersion: policy.wren.io/v1alpha1\nkind: PeerAuthentication\nmetadata: { name: default, namespace: demo }\nspec: { mtls: { mode: PERMISSIVE } }\n');
  await waitFor(() => server.policy.mtls.mode === 'PERMISSIVE', 'PeerAuthentication pushed');
  expect(await plain()).toEqual({ status: 403, reason: 'no-allow-policy-matched' });
  const proxies = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/proxies`)).json()) as { proxies: { inboundPolicy: { mtls: { mode: string } } }[] };
  expect(proxies.proxies[0].inboundPolicy.mtls.mode).toBe('PERMISSIVE');
});

test('a pushed RequestAuthentication verifies tokens on the next request; a bad one is rejected with its path; removing it stops JWT checks', async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1' }] });
  const ra = (rule: string) => `apiVersion: policy.wren.io/v1alpha1
kind: RequestAuthentication
metadata: { name: orders-jwt, namespace: demo }
spec:
  selector: { matchLabels: { app: orders } }
  jwtRules:
    - issuer: https://id.example.com
      jwks: '${jwks}'
${rule}`;
  const sign = (aud: string) => new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer('https://id.example.com').setAudience(aud).setExpirationTime('5m').sign(privateKey);
  const withToken = (tok: string) =>
    new Promise<{ status: number; reason: unknown }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/name', headers: { host: 'orders', authorization: `Bearer ${tok}` }, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, reason: res.headers['wren-jwt-reason'] }));
      });
      req.on('error', reject);
      req.end();
    });
  expect(await withToken('not-a-jwt')).toMatchObject({ status: 200 }); // no RequestAuthentication yet
  await replaceFile(join(dir, 'ra.yaml'), ra('      audiences: [orders]\n'));
  await waitFor(() => server.policy.jwtRules.length === 1, 'RequestAuthentication pushed');
  expect(await withToken('not-a-jwt')).toEqual({ status: 401, reason: 'malformed' });
  expect(await withToken(await sign('orders'))).toEqual({ status: 200, reason: undefined });
  expect(await withToken(await sign('billing'))).toEqual({ status: 401, reason: 'bad-audience' });

  await replaceFile(join(dir, 'ra.yaml'), ra('      audiences: [orders]\n      jwksUri: https://id.example.com/jwks\n'));
  await waitFor(() => source.errors().some((e) => e.startsWith('mesh/ra.yaml')), 'rejection');
  expect(source.errors()).toContain('mesh/ra.yaml: spec.jwtRules[0]: only one of jwksUri, jwks and jwksFile may be set, got jwks, jwksUri');
  await new Promise((r) => setTimeout(r, 100));
  expect(await withToken(await sign('billing'))).toEqual({ status: 401, reason: 'bad-audience' });

  await rm(join(dir, 'ra.yaml'));
  await waitFor(() => server.policy.jwtRules.length === 0, 'RequestAuthentication removed');
  expect(await withToken('not-a-jwt')).toMatchObject({ status: 200 });
});
