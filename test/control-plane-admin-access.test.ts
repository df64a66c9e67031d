import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { proxyStatusCommand } from '../cli/proxy-status.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { ADMIN_TOKEN_AUDIENCE } from '../contract/identity.js';
import { TokenReviewAuthenticator } from '../control-plane/identity/token-review-authenticator.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { FakeKubeApi } from './fake-kube-api.js';
import { adminGet } from './helpers/admin-get.js';

/**
 * The control plane's admin port as installed (`--admin=0.0.0.0:15014`): the kubelet and
 * Prometheus reach /live, /ready and /metrics from anywhere; the debug pages, /api/ and the
 * dashboard (every Service, endpoint, policy and denial of the mesh) answer another address
 * only with a `wren-admin` token of a ServiceAccount of wren-system, checked by TokenReview
 * against the fake API server (istiod's debug-endpoint auth). The CLI's Kubernetes mode
 * mints one for wren-cli and sends it through the pod proxy, which here reaches the control
 * plane on the host's own non-loopback address, so the request is not from loopback.
 */
const external = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
const maybe = external ? test : test.skip;
let dir: string;
let kubeconfig: string;
let api: FakeKubeApi;
let cp: ControlPlane;

beforeAll(async () => {
  if (!external) return;
  dir = await mkdtemp(join(tmpdir(), 'wren-admin-access-'));
  await mkdir(join(dir, 'mesh'));
  api = await FakeKubeApi.start();
  kubeconfig = join(dir, 'kubeconfig');
  await writeFile(kubeconfig, api.kubeConfig().exportConfig());
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: '0.0.0.0:0', trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(7), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh'), rescanMs: 5_000 }),
    adminAuthenticator: TokenReviewAuthenticator.fromKubeConfig(api.kubeConfig(), { clock: systemClock, audiences: [ADMIN_TOKEN_AUDIENCE] }),
  });
  await cp.whenReady();
  api.apply('pods', {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: 'wren-control-plane-a', namespace: 'wren-system', labels: { 'app.kubernetes.io/name': 'wren-control-plane' } },
    spec: { containers: [{ name: 'control-plane', image: 'wren' }] },
    status: { phase: 'Running', podIP: external },
  });
  api.podProxies.set('wren-system/wren-control-plane-a:15014', `${external}:${cp.adminPort}`);
});

afterAll(async () => {
  if (!external) return;
  await cp.close();
  await api.close();
  await rm(dir, { recursive: true, force: true });
});

const get = (host: string, path: string, token?: string) =>
  adminGet(`http://${host}:${cp.adminPort}${path}`, { headers: token ? { 'x-wren-admin-token': token } : {} }).then(async (r) => ({ status: r.status, body: await r.text() }));
const PROTECTED = ['/debug/view', '/debug/proxies', '/debug/trust', '/debug/proxy-status', '/api/why', '/api/topology', '/dashboard/'];

maybe('from another address: probes and metrics open, debug pages, /api/ and the dashboard 403 naming the way in; loopback serves them', async () => {
  for (const p of ['/live', '/ready', '/metrics']) expect([p, (await get(external!, p)).status]).toEqual([p, 200]);
  for (const p of PROTECTED) {
    const r = await get(external!, p);
    expect([p, r.status]).toEqual([p, 403]);
    expect(r.body).toContain('x-wren-admin-token');
  }
  for (const p of PROTECTED) expect([p, (await get('127.0.0.1', p)).status]).toEqual([p, 200]);
});

maybe("a wren-admin token of a wren-system ServiceAccount opens them; an app's token, another audience or a forged one does not", async () => {
  api.tokens.set('admin-token', { username: 'system:serviceaccount:wren-system:wren-cli', audiences: [ADMIN_TOKEN_AUDIENCE] });
  api.tokens.set('app-token', { username: 'system:serviceaccount:default:web', audiences: [ADMIN_TOKEN_AUDIENCE] });
  api.tokens.set('identity-token', { username: 'system:serviceaccount:wren-system:wren-cli', audiences: ['wren-identity'] });
  for (const p of PROTECTED) expect([p, (await get(external!, p, 'admin-token')).status]).toEqual([p, 200]);
  const app = await get(external!, '/debug/view', 'app-token');
  expect([app.status, app.body]).toEqual([403, expect.stringContaining('ServiceAccount default/web')]);
  const aud = await get(external!, '/debug/view', 'identity-token');
  expect([aud.status, aud.body]).toEqual([403, expect.stringContaining('token audiences are invalid')]);
  expect((await get(external!, '/api/why', 'forged')).status).toBe(403);
});

maybe('`wren proxy-status --kubeconfig` mints a wren-cli token and gets through the pod proxy; without the right to mint, the 403 says why', async () => {
  const run = async () => {
    let out = '';
    let err = '';
    const code = await proxyStatusCommand(['--kubeconfig', kubeconfig, '--output', 'json'], (s) => (out += s), (s) => (err += s));
    return { code, out, err };
  };
  const ok = await run();
  expect({ code: ok.code, err: ok.err }).toEqual({ code: 0, err: '' });
  expect(JSON.parse(ok.out)).toEqual({ controlPlanes: [expect.objectContaining({ controlPlane: 'wren-system/wren-control-plane-a', error: null, status: expect.objectContaining({ ready: true }) })] });
  api.deniedAccess.add('create serviceaccounts/token wren-system');
  try {
    const refused = await run();
    expect(refused.code).not.toBe(0);
    const said = refused.out + refused.err;
    expect(said).toContain('HTTP 403');
    expect(said).toContain('x-wren-admin-token');
  } finally {
    api.deniedAccess.delete('create serviceaccounts/token wren-system');
  }
});
