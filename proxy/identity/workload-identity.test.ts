import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { CertificateAuthority, createCsr, createRootCa, generateKeyPair, readCsr } from '../../certs/index.js';
import { CLOCK_SKEW_MS } from '../../certs/ca.js';
import { FakeClock, seededRandom } from '../../common/clock.js';
import { createLogger } from '../../common/logger.js';
import type { CertifyRequest, CertifyResponse } from '../../contract/identity.js';
import { DEFAULT_RENEWAL_POLICY as P } from './renewal-schedule.js';
import { MAX_NOT_YET_VALID_MS, WALL_CHECK_MS, WorkloadIdentity } from './workload-identity.js';

const ID = 'spiffe://cluster.local/ns/shop/sa/web';
const TTL = 60_000;
const root = createRootCa({ trustDomain: 'cluster.local', now: new Date(Date.now() - 3_600_000) });
const ca = new CertificateAuthority({ ...root, trustDomain: 'cluster.local' });
const keys = [generateKeyPair().privateKeyPem, generateKeyPair().privateKeyPem];
const flush = () => new Promise<void>((r) => setImmediate(r));

interface Rig {
  clock: FakeClock;
  wi: WorkloadIdentity;
  calls: CertifyRequest[];
  logs: string[];
  /** Make the next N calls fail with this gRPC code (and trailers). */
  fail(n: number, code?: number, metadata?: grpc.Metadata): void;
  /** Replace the answer (tampering tests). */
  tamper: ((r: CertifyResponse) => CertifyResponse) | null;
}

/**
 * A FakeClock whose wall clock can jump ahead of its monotonic one: what a suspend (a laptop
 * running kind asleep, a VM paused or live-migrated) does, when CLOCK_MONOTONIC, which
 * Node's timers run on, stops and the wall clock is set right on resume.
 */
class SuspendableClock extends FakeClock {
  skipped = 0;
  override wallNow(): number {
    return super.wallNow() + this.skipped;
  }
}

/** `caAheadMs`: how far the control plane's (the CA's) clock runs ahead of the proxy's. */
function rig(o: { caAheadMs?: number; ttlMs?: number } = {}): Rig & { clock: SuspendableClock } {
  const clock = new SuspendableClock(Date.now());
  const calls: CertifyRequest[] = [];
  const logs: string[] = [];
  let failing = 0;
  let failCode = 14;
  let failMetadata: grpc.Metadata | undefined;
  let token = 0;
  let key = 0;
  const r: Rig & { clock: SuspendableClock } = {
    clock, calls, logs, tamper: null,
    fail: (n, code = 14, metadata) => ((failing = n), (failCode = code), (failMetadata = metadata)),
    wi: new WorkloadIdentity({
      spiffeId: ID,
      clock,
      random: seededRandom(3),
      logger: createLogger({ level: 'debug', sink: (l) => void logs.push(l) }),
      readToken: async () => Buffer.from(`token-${++token}`),
      generateKey: async () => keys[key++ % keys.length],
      certify: async (req) => {
        calls.push(req);
        if (failing > 0) {
          failing--;
          throw Object.assign(new Error(`${failCode} failure`), { code: failCode, details: 'control plane says no', metadata: failMetadata ?? new grpc.Metadata() });
        }
        const w = ca.issue(req.csrPem, { identity: req.identity, ttlMs: o.ttlMs ?? TTL, now: new Date(clock.wallNow() + (o.caAheadMs ?? 0)) });
        const res = { certChainPem: w.certPem, trustBundlePem: root.certPem, validUntilMs: w.notAfter.getTime() };
        return r.tamper ? r.tamper(res) : res;
      },
    }),
  };
  return r;
}

const serialOf = (wi: WorkloadIdentity) => wi.tls.leaf().serialNumber;
const delayNow = (r: Rig) => r.wi.nextRenewalAt! - r.clock.now();

async function fire(r: Rig): Promise<void> {
  r.clock.advance(delayNow(r));
  await r.wi.settled();
}

describe('WorkloadIdentity', () => {
  test('obtains a certificate for its key, then renews at 70% ± 5% of the remaining lifetime with a fresh key and token', async () => {
    const r = rig();
    const tls = await r.wi.obtain(10_000);
    expect(tls.spiffeId).toBe(ID);
    expect(r.calls).toHaveLength(1);
    expect(r.calls[0]).toEqual({ identity: ID, token: Buffer.from('token-1'), csrPem: expect.stringContaining('CERTIFICATE REQUEST'), requestedLifetimeMs: 0 });
    expect(readCsr(r.calls[0].csrPem).sans.uris).toEqual([ID]);
    let rotations = 0;
    tls.onRotate(() => rotations++);
    r.wi.start();
    for (let i = 1; i <= 4; i++) {
      const remaining = r.wi.validUntil - r.clock.now();
      expect(delayNow(r)).toBeGreaterThanOrEqual(0.65 * remaining - 1);
      expect(delayNow(r)).toBeLessThanOrEqual(0.75 * remaining + 1);
      const before = serialOf(r.wi);
      const material = tls.material;
      await fire(r);
      expect(rotations).toBe(i);
      expect(serialOf(r.wi)).not.toBe(before);
      expect(tls.material.keyPem).not.toBe(material.keyPem);
      expect(r.calls[i].token.toString()).toBe(`token-${i + 1}`);
    }
    expect(r.wi.counts).toEqual({ success: 5, failure: 0 });
    r.wi.stop();
    expect(r.clock.pending()).toBe(0);
  });

  test('failed renewals back off exponentially, capped by half the remaining validity, then reset on success', async () => {
    const r = rig();
    await r.wi.obtain(10_000);
    r.wi.start();
    const serial = serialOf(r.wi);
    r.fail(4);
    await fire(r);
    const delays: number[] = [];
    for (let attempt = 0; attempt < 4; attempt++) {
      const d = delayNow(r);
      const remaining = r.wi.validUntil - r.clock.now();
      const cap = Math.min(P.retryMaxMs, P.retryInitialMs * 2 ** attempt);
      expect(d).toBeGreaterThanOrEqual(Math.min(cap / 2, remaining / 2) - 1);
      expect(d).toBeLessThanOrEqual(Math.min(cap, remaining / 2) + 1);
      delays.push(d);
      expect(serialOf(r.wi)).toBe(serial);
      await fire(r);
    }
    expect(delays[3]).toBeGreaterThan(delays[0]);
    expect(serialOf(r.wi)).not.toBe(serial);
    expect(r.wi.counts).toEqual({ success: 2, failure: 4 });
    // After the success the schedule is back to ~70% of a fresh lifetime.
    expect(delayNow(r)).toBeGreaterThan(0.6 * (r.wi.validUntil - r.clock.now()));
    expect(r.logs.filter((l) => l.includes('certificate renewal failed; retrying'))).toHaveLength(4);
    r.wi.stop();
  });

  test('RESOURCE_EXHAUSTED with a pushback (the control plane\'s Certify limit): the retry waits at least that long, at startup and on renewal (adv21)', async () => {
    const pushback = (ms: string): grpc.Metadata => {
      const md = new grpc.Metadata();
      md.set('grpc-retry-pushback-ms', ms);
      return md;
    };
    const r = rig();
    r.fail(1, grpc.status.RESOURCE_EXHAUSTED, pushback('20000'));
    const t0 = r.clock.now();
    const obtained = r.wi.obtain(60_000);
    await flush();
    await flush();
    // The backoff alone would retry within a second; the pushback says 20 s.
    r.clock.advance(19_000);
    await flush();
    expect(r.calls).toHaveLength(1);
    r.clock.advance(1000);
    await obtained;
    expect(r.clock.now() - t0).toBeGreaterThanOrEqual(20_000);
    expect(r.calls).toHaveLength(2);
    r.wi.start();
    r.fail(1, grpc.status.RESOURCE_EXHAUSTED, pushback('45000'));
    await fire(r);
    expect(delayNow(r)).toBeGreaterThanOrEqual(45_000);
    // An absurd pushback is capped (5 min).
    r.fail(1, grpc.status.RESOURCE_EXHAUSTED, pushback('999999999'));
    await fire(r);
    expect(delayNow(r)).toBeLessThanOrEqual(5 * 60_000);
    r.wi.stop();
  });

  test('keeps retrying after expiry at the capped backoff, logging an error, and recovers', async () => {
    const r = rig();
    await r.wi.obtain(10_000);
    r.wi.start();
    r.fail(1000);
    while (r.clock.now() < r.wi.validUntil + 5 * P.retryMaxMs) await fire(r);
    expect(r.logs.some((l) => l.includes('"code":"CERT_EXPIRED"'))).toBe(true);
    const d = delayNow(r);
    expect(d).toBeGreaterThanOrEqual(P.retryMaxMs / 2);
    expect(d).toBeLessThanOrEqual(P.retryMaxMs);
    r.fail(0);
    await fire(r);
    expect(r.wi.validUntil).toBeGreaterThan(r.clock.now());
    r.wi.stop();
  });

  test('rejects answers that do not verify, name someone else, or are not for its key', async () => {
    const other = createRootCa({ trustDomain: 'cluster.local', now: new Date(Date.now() - 3_600_000) });
    const cases: [string, (x: CertifyResponse) => CertifyResponse][] = [
      ['does not verify', (x) => ({ ...x, trustBundlePem: other.certPem })],
      ['no certificate', (x) => ({ ...x, certChainPem: '' })],
    ];
    for (const [msg, tamper] of cases) {
      const r = rig();
      r.tamper = tamper;
      r.fail(0);
      await expect(r.wi.obtain(1)).rejects.toThrow(msg);
    }
    // A valid certificate for the right identity, but for another key (a CSR made with a key we do not hold).
    const foreignCsr = createCsr(generateKeyPair().privateKeyPem, ID);
    const r = rig();
    r.tamper = (x) => ({ ...x, certChainPem: ca.issue(foreignCsr, { identity: ID, ttlMs: TTL, now: new Date(r.clock.now()) }).certPem });
    await expect(r.wi.obtain(1)).rejects.toThrow('not for our key');
  });

  test('the first certificate: permanent refusals fail at once, transient ones are retried until the deadline', async () => {
    const denied = rig();
    denied.fail(1, 7);
    await expect(denied.wi.obtain(60_000)).rejects.toThrow(/1 attempt\(s\)\): gRPC 7: control plane says no/);
    const down = rig();
    down.fail(1000, 14);
    let outcome: unknown = null;
    const p = down.wi.obtain(20_000).catch((e: Error) => (outcome = e));
    for (let i = 0; i < 200 && outcome === null; i++) {
      await flush();
      down.clock.advance(500);
    }
    expect(String(outcome)).toMatch(/cannot obtain a certificate for .* \([4-9] attempt\(s\)\): gRPC 14/);
    await p;
    const flaky = rig();
    flaky.fail(2, 14);
    const got = flaky.wi.obtain(60_000);
    for (let i = 0; i < 20 && flaky.calls.length < 3; i++) {
      await flush();
      flaky.clock.advance(1000);
    }
    expect((await got).spiffeId).toBe(ID);
  });

  test('the first certificate: an abort (SIGTERM during startup) stops the retry wait at once, with its reason, and schedules nothing', async () => {
    const down = rig();
    down.fail(1000, 14);
    const stop = new AbortController();
    let outcome: unknown = null;
    const p = down.wi.obtain(60_000, stop.signal).catch((e: unknown) => (outcome = e));
    for (let i = 0; i < 100 && down.clock.pending() === 0; i++) await flush();
    expect({ calls: down.calls.length, pending: down.clock.pending() }).toEqual({ calls: 1, pending: 1 });
    const reason = new Error('SIGTERM');
    stop.abort(reason);
    for (let i = 0; i < 10 && outcome === null; i++) await flush();
    expect(outcome).toBe(reason);
    await p;
    // The retry timer is gone: no more Certify calls, however long the clock runs.
    expect(down.clock.pending()).toBe(0);
    down.clock.advance(120_000);
    await flush();
    expect(down.calls).toHaveLength(1);
    expect(down.wi.counts).toEqual({ success: 0, failure: 1 });
  });

  test('the first certificate: an abort during the Certify call rejects at once (the call is handed the signal) and is not a failure', async () => {
    const clock = new FakeClock(Date.now());
    const signals: (AbortSignal | undefined)[] = [];
    const wi = new WorkloadIdentity({
      spiffeId: ID, clock, random: seededRandom(3), logger: createLogger({ level: 'error', sink: () => undefined }),
      readToken: async () => Buffer.from('token'), generateKey: async () => keys[0],
      // A control plane that never answers: only the signal ends the call.
      certify: (_req, _timeoutMs, signal) => {
        signals.push(signal);
        return new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(signal.reason)));
      },
    });
    const stop = new AbortController();
    const p = wi.obtain(60_000, stop.signal);
    for (let i = 0; i < 100 && signals.length === 0; i++) await flush();
    expect(signals).toEqual([stop.signal]);
    stop.abort(new Error('SIGTERM'));
    await expect(p).rejects.toThrow('SIGTERM');
    expect(wi.counts).toEqual({ success: 0, failure: 0 });
    expect(clock.pending()).toBe(0);
    // Already aborted: no Certify call at all.
    await expect(wi.obtain(60_000, stop.signal)).rejects.toThrow('SIGTERM');
    expect(signals).toHaveLength(1);
  });

  test('metrics: expiry, next renewal and attempts by result, including those before attaching', async () => {
    const r = rig();
    r.fail(1);
    const p = r.wi.obtain(60_000);
    for (let i = 0; i < 20 && r.calls.length < 2; i++) {
      await flush();
      r.clock.advance(1000);
    }
    await p;
    r.wi.start();
    const registry = new Registry();
    r.wi.attachMetrics(registry);
    const text = await registry.metrics();
    expect(text).toContain(`wren_identity_cert_expiry_timestamp_seconds ${r.wi.validUntil / 1000}`);
    expect(text).toContain(`wren_identity_cert_next_renewal_timestamp_seconds ${r.wi.nextRenewalAt! / 1000}`);
    expect(text).toContain('wren_identity_cert_renewals_total{result="success"} 1');
    expect(text).toContain('wren_identity_cert_renewals_total{result="failure"} 1');
    await fire(r);
    expect(await registry.metrics()).toContain('wren_identity_cert_renewals_total{result="success"} 2');
    expect(new Date(new X509Certificate(r.wi.tls.material.certChainPem).validTo).getTime()).toBe(r.wi.validUntil);
    r.wi.stop();
  });

  test('renewSoon brings the renewal forward (never later) and is a no-op before start() and after stop()', async () => {
    const r = rig();
    const tls = await r.wi.obtain(10_000);
    r.wi.renewSoon(0, 'test');
    expect(r.wi.nextRenewalAt).toBeNull(); // not started: nothing to move
    r.wi.start();
    expect(WorkloadIdentity.managing(tls)).toBe(r.wi);
    const scheduled = r.wi.nextRenewalAt!;
    r.wi.renewSoon(500, 'trust bundle changed');
    expect(r.wi.nextRenewalAt).toBe(r.clock.now() + 500);
    expect(r.logs.at(-1)).toMatch(/renewing the certificate early.*trust bundle changed/);
    r.wi.renewSoon(5_000, 'later'); // a later time never postpones it
    expect(r.wi.nextRenewalAt).toBe(r.clock.now() + 500);
    expect(scheduled).toBeGreaterThan(r.clock.now() + 500);
    const serial = serialOf(r.wi);
    r.clock.advance(500);
    await r.wi.settled();
    expect(serialOf(r.wi)).not.toBe(serial);
    expect(r.calls).toHaveLength(2);
    // Back on the regular schedule for the new certificate.
    expect(delayNow(r)).toBeGreaterThan(0.64 * TTL);
    r.wi.stop();
    r.wi.renewSoon(0, 'stopped');
    expect(r.wi.nextRenewalAt).toBeNull();
  });

  test('a certificate valid from a little later (the CA clock ahead by more than the CA\'s backdating, CLOCK_SKEW_MS) is kept and used from its notBefore, at start and on renewal, without another signature', async () => {
    // 30 s more than the backdating ahead: every certificate the CA signs starts 30 s after the proxy's now, however
    // often it is asked again, so refusing it and retrying never got one (adv63).
    const r = rig({ caAheadMs: CLOCK_SKEW_MS + 30_000 });
    let outcome: unknown = null;
    const giveUp = new AbortController();
    const p = r.wi.obtain(60_000, giveUp.signal).then((t) => (outcome = t), (e: unknown) => (outcome = e));
    for (let i = 0; i < 100 && r.clock.pending() === 0; i++) await flush();
    expect(r.calls).toHaveLength(1);
    r.clock.advance(29_000); // notBefore is 30 s away (floored to the second: 29 to 30 s)
    for (let i = 0; i < 100 && r.clock.pending() === 0; i++) await flush();
    r.clock.advance(1_000);
    for (let i = 0; i < 100 && outcome === null; i++) await flush();
    giveUp.abort(new Error('no certificate within 30 s'));
    await p;
    expect(outcome).not.toBeInstanceOf(Error);
    expect(outcome).toBe(r.wi.tls);
    expect(r.wi.tls.leaf().validFromDate.getTime()).toBeLessThanOrEqual(r.clock.now());
    expect({ calls: r.calls.length, counts: r.wi.counts }).toEqual({ calls: 1, counts: { success: 1, failure: 0 } });
    expect(r.logs.some((l) => l.includes('"code":"CERT_NOT_YET_VALID"'))).toBe(true);
    // Renewal: the new certificate is held until its notBefore; the old one serves meanwhile.
    r.wi.start();
    const old = serialOf(r.wi);
    r.clock.advance(delayNow(r));
    for (let i = 0; i < 100 && r.clock.pending() === 0; i++) await flush();
    expect(r.calls).toHaveLength(2);
    expect(serialOf(r.wi)).toBe(old);
    const installAt = r.wi.nextRenewalAt!;
    expect(installAt - r.clock.now()).toBeGreaterThan(28_000);
    expect(installAt - r.clock.now()).toBeLessThanOrEqual(30_000);
    r.clock.advance(installAt - r.clock.now());
    await r.wi.settled();
    expect(serialOf(r.wi)).not.toBe(old);
    expect({ calls: r.calls.length, counts: r.wi.counts }).toEqual({ calls: 2, counts: { success: 2, failure: 0 } });
    // And the next renewal is ~70% of what is left of it by the proxy's clock.
    const remaining = r.wi.validUntil - r.clock.now();
    expect(delayNow(r)).toBeGreaterThanOrEqual(0.65 * remaining - 1);
    expect(delayNow(r)).toBeLessThanOrEqual(0.75 * remaining + 1);
    // stop() while a certificate waits for its notBefore: nothing is installed later, no timer is left.
    r.clock.advance(delayNow(r));
    for (let i = 0; i < 100 && r.clock.pending() === 0; i++) await flush();
    expect(r.calls).toHaveLength(3);
    const kept = serialOf(r.wi);
    r.wi.stop();
    await r.wi.settled();
    expect(r.clock.pending()).toBe(0);
    r.clock.advance(60_000);
    await flush();
    expect(serialOf(r.wi)).toBe(kept);
  });

  test('an abort that lands while the Certify answer is on its way: a certificate valid only later is not waited for nor installed at its notBefore', async () => {
    const clock = new FakeClock(Date.now());
    const stop = new AbortController();
    const wi = new WorkloadIdentity({
      spiffeId: ID, clock, random: seededRandom(3), logger: createLogger({ level: 'error', sink: () => undefined }),
      readToken: async () => Buffer.from('token'), generateKey: async () => keys[0],
      // The answer comes (a certificate starting 30 s after the proxy's now), and SIGTERM with it.
      certify: async (req) => {
        const w = ca.issue(req.csrPem, { identity: req.identity, ttlMs: TTL, now: new Date(clock.wallNow() + CLOCK_SKEW_MS + 30_000) });
        stop.abort(new Error('SIGTERM'));
        return { certChainPem: w.certPem, trustBundlePem: root.certPem, validUntilMs: w.notAfter.getTime() };
      },
    });
    await expect(wi.obtain(60_000, stop.signal)).rejects.toThrow('SIGTERM');
    // Before, the wait for its notBefore started on an aborted signal (its 'abort' never comes again):
    // a timer was left, and the certificate was installed 30 s later on a sidecar shutting down.
    expect(clock.pending()).toBe(0);
    expect(wi.counts).toEqual({ success: 0, failure: 0 });
  });

  test('a certificate valid only more than 5 minutes from now (a CA clock far off) is refused, as before, with the skew named', async () => {
    const r = rig({ caAheadMs: MAX_NOT_YET_VALID_MS + CLOCK_SKEW_MS + 60_000 });
    await expect(r.wi.obtain(1)).rejects.toThrow(/not yet valid .*\(it starts 3[56][0-9] s after this proxy's clock: is the control plane's clock ahead\?/);
    expect(r.wi.counts).toEqual({ success: 0, failure: 1 });
  });

  test('a suspend longer than the time to the renewal (the monotonic clock stopped, the wall clock did not): it renews within a minute of waking, not hours later with an expired certificate', async () => {
    // ztunnel's open istio/ztunnel#1481; dapr (dapr/dapr#7565) and cert-manager
    // (cert-manager/cert-manager#8464) check the wall clock every minute, as this does.
    const r = rig({ ttlMs: 24 * 3_600_000 });
    await r.wi.obtain(10_000);
    r.wi.start();
    const serial = serialOf(r.wi);
    expect(delayNow(r)).toBeGreaterThan(15 * 3_600_000); // ~70% of 24 h
    // Asleep for a day: the certificate expired meanwhile by the wall clock; no timer moved.
    r.clock.skipped = 25 * 3_600_000;
    expect(r.wi.tls.notAfterMs).toBeLessThan(r.clock.wallNow());
    r.clock.advance(WALL_CHECK_MS);
    for (let i = 0; i < 100 && r.calls.length < 2; i++) await flush();
    await r.wi.settled();
    expect(r.calls).toHaveLength(2);
    expect(serialOf(r.wi)).not.toBe(serial);
    expect(r.wi.tls.notAfterMs).toBeGreaterThan(r.clock.wallNow());
    // The metric is a wall-clock timestamp: ~70% of the new lifetime from the (woken) wall clock.
    const registry = new Registry();
    r.wi.attachMetrics(registry);
    const next = Number(/^wren_identity_cert_next_renewal_timestamp_seconds (\S+)$/m.exec(await registry.metrics())![1]) * 1000;
    expect(next - r.clock.wallNow()).toBeGreaterThan(15 * 3_600_000);
    expect(next - r.clock.wallNow()).toBeLessThan(19 * 3_600_000);
    r.wi.stop();
    expect(r.clock.pending()).toBe(0);
  });

  test('a suspend while a new certificate waits for its notBefore: it is installed within a minute of waking, not the rest of the wait later', async () => {
    // The wait for notBefore is due by the wall clock too (common/wall-deadline.ts, as the renewal is): it was one
    // monotonic timer of the whole wait, which a suspend stops.
    const r = rig({ caAheadMs: CLOCK_SKEW_MS + 4 * 60_000 });
    let outcome: unknown = null;
    const p = r.wi.obtain(10 * 60_000).then((t) => (outcome = t), (e: unknown) => (outcome = e));
    for (let i = 0; i < 100 && r.clock.pending() === 0; i++) await flush();
    expect(r.calls).toHaveLength(1);
    expect(r.wi.nextRenewalAt! - r.clock.now()).toBeGreaterThan(3 * 60_000);
    // Asleep for ten minutes: notBefore passed by the wall clock; no timer moved.
    r.clock.skipped = 10 * 60_000;
    r.clock.advance(WALL_CHECK_MS);
    for (let i = 0; i < 100 && outcome === null; i++) await flush();
    expect(outcome).toBe(r.wi.tls);
    await p;
    expect(r.wi.tls.leaf().validFromDate.getTime()).toBeLessThanOrEqual(r.clock.wallNow());
    expect({ calls: r.calls.length, counts: r.wi.counts, pending: r.clock.pending() }).toEqual({ calls: 1, counts: { success: 1, failure: 0 }, pending: 0 });
  });

  test('renewSoon (a trust push) never brings a retry before the control plane\'s pushback: that try would be refused again', async () => {
    const r = rig({ ttlMs: 3_600_000 });
    await r.wi.obtain(10_000);
    r.wi.start();
    const md = new grpc.Metadata();
    md.set('grpc-retry-pushback-ms', '30000');
    r.fail(1, grpc.status.RESOURCE_EXHAUSTED, md);
    await fire(r);
    expect(r.calls).toHaveLength(2);
    const t0 = r.clock.now();
    expect(r.wi.nextRenewalAt! - t0).toBeGreaterThanOrEqual(30_000);
    r.wi.renewSoon(0, 'trust bundle changed');
    expect(r.wi.nextRenewalAt! - t0).toBeGreaterThanOrEqual(30_000);
    r.clock.advance(29_000);
    await flush();
    expect(r.calls).toHaveLength(2);
    r.clock.advance(r.wi.nextRenewalAt! - r.clock.now());
    await r.wi.settled();
    expect(r.calls).toHaveLength(3);
    expect(r.wi.counts).toEqual({ success: 2, failure: 1 });
    // Once the pushback is over, renewSoon brings a renewal forward as ever.
    r.wi.renewSoon(500, 'trust bundle changed');
    expect(r.wi.nextRenewalAt).toBe(r.clock.now() + 500);
    r.wi.stop();
  });
});
