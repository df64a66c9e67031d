import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRootCa } from '../certs/index.js';
import { certFingerprint } from '../contract/trust-anchors.js';
import type { DebugTrustProxy } from '../control-plane/discovery/subscriber.js';
import { evaluate, trustAnchorsCommand, type Criteria, type TrustDump } from './trust-anchors.js';

const oldRoot = createRootCa({ trustDomain: 'cluster.local', commonName: 'old' });
const newRoot = createRootCa({ trustDomain: 'cluster.local', commonName: 'new' });
const OLD = certFingerprint(oldRoot.certPem);
const NEW = certFingerprint(newRoot.certPem);

const proxy = (pod: string, trusts: string[], uses: string | null, reported = true, atStartup: string[] | null = [OLD]): DebugTrustProxy => ({
  id: 1, identity: `spiffe://cluster.local/ns/default/sa/${pod}`, pod: `default/${pod}`, peer: 'x', reported, trusts: reported ? trusts : [], trustsAtStartup: reported ? atStartup : null,
  uses: reported ? uses : null, leafSerial: reported ? 'ab' : null, notAfter: reported ? '2030-01-01T00:00:00.000Z' : null, reportedForMs: reported ? 5 : null, ackedTrustState: true,
});
const dump = (anchors: string[], signing: string, proxies: DebugTrustProxy[]): TrustDump => ({ controlPlane: { trustAnchors: anchors.map((fingerprint) => ({ fingerprint })), signingRoot: signing }, proxies });
const crit = (c: Partial<Criteria>): Criteria => ({ root: null, uses: false, old: null, removed: false, allowEmpty: false, ...c });
const one = (d: TrustDump, c: Partial<Criteria>) => evaluate([{ admin: 'cp:15014', dump: d }], crit(c));

describe('evaluate: each phase is "not yet" until every proxy (and the control plane) is there', () => {
  test('trusted: every proxy trusts the new root', () => {
    const r = one(dump([OLD, NEW], OLD, [proxy('a', [OLD, NEW], OLD), proxy('b', [OLD], OLD)]), { root: NEW });
    expect(r.ready).toBe(false);
    expect(r.phase).toBe('trusted');
    expect(r.proxies.map((p) => p.blocking)).toEqual([[], ['does not trust the new root']]);
    expect(r.summary).toMatch(/1\/2 proxies trust the new root .*\nNOT READY — 1\/2 proxies not there yet:\n {2}default\/b does not trust the new root/);
    expect(one(dump([OLD, NEW], OLD, [proxy('a', [OLD, NEW], OLD), proxy('b', [NEW, OLD], OLD)]), { root: NEW })).toMatchObject({ ready: true, summary: expect.stringContaining('READY — ready to reissue') });
  });

  test('a control plane that does not hand the root out yet, a proxy without a report, or no proxy at all is not ready', () => {
    const cpBehind = one(dump([OLD], OLD, [proxy('a', [OLD, NEW], OLD)]), { root: NEW });
    expect(cpBehind.ready).toBe(false);
    expect(cpBehind.controlPlanes[0].blocking[0]).toMatch(/does not hand out the new root yet/);
    expect(one(dump([OLD, NEW], OLD, [proxy('a', [], null, false)]), { root: NEW }).proxies[0].blocking).toEqual(['has not reported its certificate yet']);
    const empty = one(dump([OLD, NEW], OLD, []), { root: NEW });
    expect(empty.ready).toBe(false);
    expect(empty.summary).toMatch(/no proxy is connected/);
    expect(one(dump([OLD, NEW], OLD, []), { root: NEW, allowEmpty: true }).ready).toBe(true);
    expect(evaluate([{ admin: 'cp', dump: { controlPlane: null, proxies: [proxy('a', [NEW], NEW)] } }], crit({ root: NEW })).ready).toBe(false);
  });

  test('in-use: every certificate chains to the new root and the CA signs under it', () => {
    const d = (signing: string, uses: string) => dump([OLD, NEW], signing, [proxy('a', [OLD, NEW], NEW), proxy('b', [OLD, NEW], uses)]);
    expect(one(d(NEW, OLD), { root: NEW, uses: true }).proxies[1].blocking).toEqual(['presents a certificate from another root']);
    expect(one(d(OLD, NEW), { root: NEW, uses: true }).controlPlanes[0].blocking[0]).toMatch(/does not sign under the new root/);
    expect(one(d(NEW, NEW), { root: NEW, uses: true })).toMatchObject({ ready: true, phase: 'in-use' });
  });

  test('old-unused and old-removed', () => {
    const mid = dump([OLD, NEW], NEW, [proxy('a', [OLD, NEW], NEW), proxy('b', [OLD, NEW], OLD)]);
    expect(one(mid, { old: OLD }).proxies[1].blocking).toEqual(['still presents a certificate from the old root']);
    const used = dump([OLD, NEW], NEW, [proxy('a', [OLD, NEW], NEW), proxy('b', [OLD, NEW], NEW)]);
    expect(one(used, { old: OLD })).toMatchObject({ ready: true, phase: 'old-unused' });
    const removed = one(used, { old: OLD, removed: true });
    expect(removed.ready).toBe(false);
    expect(removed.controlPlanes[0].blocking).toEqual(['the control plane still hands out the old root']);
    expect(removed.proxies[0].blocking).toEqual(['still trusts the old root']);
    expect(one(dump([NEW], NEW, [proxy('a', [NEW], NEW)]), { old: OLD, removed: true })).toMatchObject({ ready: true, phase: 'old-removed' });
  });

  test('--restart-safe also wants the new root in every configured bundle (a restarted sidecar verifies the control plane with it)', () => {
    const d = dump([OLD, NEW], OLD, [proxy('a', [OLD, NEW], OLD, true, [OLD, NEW]), proxy('b', [OLD, NEW], OLD, true, [OLD]), proxy('c', [OLD, NEW], OLD, true, null)]);
    expect(one(d, { root: NEW }).ready).toBe(true);
    const r = one(d, { root: NEW, restartSafe: true });
    expect(r.ready).toBe(false);
    expect(r.proxies.map((p) => [p.restartSafe, p.blocking.length])).toEqual([[true, 0], [false, 1], [null, 1]]);
    expect(r.summary).toMatch(/1\/3 have it in their configured bundle/);
  });

  test('several replicas: a proxy behind any of them holds the step back', () => {
    const r = evaluate(
      [{ admin: 'cp-0:15014', dump: dump([OLD, NEW], OLD, [proxy('a', [OLD, NEW], OLD)]) }, { admin: 'cp-1:15014', dump: dump([OLD, NEW], OLD, [proxy('b', [OLD], OLD)]) }],
      crit({ root: NEW }),
    );
    expect(r.ready).toBe(false);
    expect(r.proxies.map((p) => p.admin)).toEqual(['cp-0:15014', 'cp-1:15014']);
  });
});

describe('the command', () => {
  let server: Server;
  let body: TrustDump;
  let admin: string;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wren-ta-'));
    writeFileSync(join(dir, 'new.pem'), newRoot.certPem);
    server = createServer((req, res) => {
      res.writeHead(req.url === '/debug/trust' ? 200 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    admin = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const run = async (...argv: string[]) => {
    let out = '';
    let err = '';
    const code = await trustAnchorsCommand(argv, (s) => (out += s), (s) => (err += s));
    return { code, out, err };
  };

  test('exit 1 with a table while a proxy lags, 0 once all trust the root (root given as a PEM file or a fingerprint)', async () => {
    body = dump([OLD, NEW], OLD, [proxy('a', [OLD, NEW], OLD), proxy('b', [OLD], OLD)]);
    const lag = await run('check', '--admin', admin, '--root', join(dir, 'new.pem'));
    expect(lag.code).toBe(1);
    expect(lag.out).toMatch(/PROXY +POD +TRUSTS NEW +USES NEW +RESTART-SAFE +CERT EXPIRES/);
    expect(lag.out).toMatch(/default\/b +no +no +no/);
    body = dump([OLD, NEW], OLD, [proxy('a', [OLD, NEW], OLD), proxy('b', [OLD, NEW], OLD)]);
    const ok = await run('check', '--admin', admin, '--root', NEW.replace(/:/g, '').toLowerCase(), '--json');
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.out)).toMatchObject({ ready: true, phase: 'trusted', root: NEW });
  });

  test("a proxy's claimed identity and pod (Subscribe, the proxy's word without client certificates) are printed with what a terminal acts on as escapes", async () => {
    const evil = { ...proxy('b', [OLD], OLD), identity: 'spiffe://x\x1b]52;c;cHduZWQ=\x07', pod: 'default/b\x9b2J\u202e' };
    body = dump([OLD, NEW], OLD, [evil]);
    const r = await run('check', '--admin', admin, '--root', NEW);
    expect(r.code).toBe(1);
    expect(r.out).toContain('spiffe://x\\x1b]52;c;cHduZWQ=\\x07');
    expect(r.out).toContain('default/b\\x9b2J\\u202e');
    // eslint-disable-next-line no-control-regex
    expect(r.out + r.err).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/);
  });

  test('usage errors exit 2; an unreachable replica exits 1', async () => {
    expect((await run('check', '--root', NEW)).code).toBe(2);
    expect((await run('check', '--admin', admin)).code).toBe(2);
    expect((await run('check', '--admin', admin, '--old', OLD, '--uses')).code).toBe(2);
    expect((await run('check', '--admin', admin, '--root', join(dir, 'missing.pem'))).err).toMatch(/cannot read/);
    expect((await run('check', '--admin', admin, '--bogus')).code).toBe(2);
    expect((await run('frobnicate')).code).toBe(2);
    const down = await run('check', '--admin', '127.0.0.1:1', '--root', NEW, '--timeout', '2s');
    expect(down.code).toBe(1);
    expect(down.err).toMatch(/cannot read 127\.0\.0\.1:1\/debug\/trust/);
  });

  test('fingerprint prints what check compares', async () => {
    writeFileSync(join(dir, 'bundle.pem'), oldRoot.certPem + newRoot.certPem);
    const r = await run('fingerprint', join(dir, 'bundle.pem'));
    expect(r.code).toBe(0);
    expect(r.out.split('\n').filter(Boolean).map((l) => l.split(' ')[0])).toEqual([OLD, NEW]);
  });
});
