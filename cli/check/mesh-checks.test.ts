import { meshChecks } from './mesh-checks.js';
import { formatOutcomes } from './check-result.js';
import type { Replica } from '../control-plane-admin.js';

/** A replica answering the admin paths meshChecks reads, with this /debug/trust. */
const replica = (name: string, anchors: string[], root: string): Replica => ({
  name,
  get: (path) => {
    const body: Record<string, unknown> = {
      '/ready': 'ok',
      '/debug/proxy-status': { proxies: [] },
      '/debug/trust': {
        controlPlane: {
          trustAnchors: anchors.map((fingerprint) => ({ fingerprint, subject: `CN=${fingerprint}`, notAfter: '2036-01-01T00:00:00Z' })),
          issuer: { subject: 'CN=issuer', notAfter: '2036-01-01T00:00:00Z' }, signingRoot: root,
        },
      },
    };
    const b = body[path];
    return Promise.resolve(b === undefined ? { status: 404, body: '' } : { status: 200, body: typeof b === 'string' ? b : JSON.stringify(b) });
  },
});
const A = 'aa'.repeat(32);
const B = 'bb'.repeat(32);
const now = () => Date.parse('2026-12-01T00:00:00Z');
const trust = async (replicas: Replica[]) =>
  Object.fromEntries((await meshChecks(replicas, now, 30)).filter((c) => c.id === 'trust-anchors' || c.id === 'issuer').map((c) => [c.id, `${c.status}: ${c.message}`]));

describe('wren check: every control-plane replica is judged, not one (ADV5-3)', () => {
  test('replicas with the same bundle and root: ✓', async () => {
    expect(await trust([replica('cp-0', [A], A), replica('cp-1', [A], A)])).toEqual({
      'trust-anchors': expect.stringMatching(/^ok: 1 trust anchor/), issuer: expect.stringMatching(/^ok: issuer CN=issuer/),
    });
  });

  test('different bundles and roots: both fail, naming which replica has which', async () => {
    const r = await trust([replica('cp-0', [A], A), replica('cp-1', [B], B), replica('cp-2', [A], A)]);
    expect(r['trust-anchors']).toMatch(/^fail: the replicas hand out different trust bundles: cp-0, cp-2: \S+; cp-1: \S+$/);
    expect(r.issuer).toMatch(/^fail: the replicas sign under roots not every replica's bundle trusts: cp-0, cp-2: signs under \S+; cp-1: signs under \S+$/);
  });

  test('mid-rotation (both anchors in every bundle), replicas may sign under different roots; not once a bundle lacks one', async () => {
    expect(await trust([replica('cp-0', [A, B], A), replica('cp-1', [B, A], B)])).toEqual({
      'trust-anchors': expect.stringMatching(/^ok: 2 trust anchor/), issuer: expect.stringMatching(/^ok: /),
    });
    // cp-1 dropped the old anchor but cp-0 still signs under it: cp-1's proxies reject cp-0's.
    const r = await trust([replica('cp-0', [A, B], A), replica('cp-1', [B], B)]);
    expect(r.issuer).toMatch(/^fail: the replicas sign under roots not every replica's bundle trusts/);
    expect(r['trust-anchors']).toMatch(/^fail: the replicas hand out different trust bundles/);
  });
});

describe('wren check source-rejections: the refused objects enforced fail-closed are counted by kind', () => {
  const rejecting = (rejected: unknown[]): Replica => ({
    name: 'cp-0',
    get: (path) => {
      const body: Record<string, unknown> = { '/ready': 'ok', '/debug/proxy-status': { proxies: [] }, '/debug/rejected': { source: 'kubernetes', rejected } };
      const b = body[path];
      return Promise.resolve(b === undefined ? { status: 404, body: '' } : { status: 200, body: typeof b === 'string' ? b : JSON.stringify(b) });
    },
  });
  const check = async (rejected: unknown[]) => (await meshChecks([rejecting(rejected)], now, 30)).find((c) => c.id === 'source-rejections')!;
  const pa = { kind: 'PeerAuthentication', namespace: 'shop', name: 'strict', path: 'spec.selector', reason: 'is required', failClosed: 'mTLS STRICT on every port, for every workload of namespace shop: plaintext is refused' };
  const ap = { kind: 'AuthorizationPolicy', namespace: 'shop', name: 'only', path: 'spec.action', reason: 'bad', failClosed: 'a DENY of every request, for every workload of namespace shop' };
  const tp = { kind: 'TrafficPolicy', namespace: 'shop', name: 'tp', path: 'spec', reason: 'bad' };

  test('a PeerAuthentication stand-in is named as such, beside an AuthorizationPolicy one', async () => {
    const c = await check([pa, ap, tp]);
    expect(c.message).toBe(
      'the kubernetes source rejects 3 object(s), so the last good version of each (if any) stays in force (1 AuthorizationPolicy object(s), 1 PeerAuthentication object(s) without one are enforced fail-closed): AuthorizationPolicy shop/only, PeerAuthentication shop/strict, TrafficPolicy shop/tp',
    );
    expect(c.details).toContain(`PeerAuthentication shop/strict: spec.selector: is required; no last good version, enforced fail-closed: ${pa.failClosed}`);
  });

  test('none enforced fail-closed: no count', async () => {
    expect((await check([tp])).message).toBe('the kubernetes source rejects 1 object(s), so the last good version of each (if any) stays in force: TrafficPolicy shop/tp');
  });
});

test("what a replica answered is printed with what a terminal acts on as escapes: a not-ready replica's body (or any server's at --admin) cannot set the window title or the clipboard", async () => {
  const hostile: Replica = { name: 'cp-0', get: () => Promise.resolve({ status: 503, body: 'draining\x1b]52;c;cHduZWQ=\x07\x9b2J\u202e' }) };
  const text = formatOutcomes(await meshChecks([hostile], now, 30));
  expect(text).toContain('cp-0: HTTP 503 draining\\x1b]52;c;cHduZWQ=\\x07\\x9b2J\\u202e');
  // eslint-disable-next-line no-control-regex
  expect(text).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/);
});
