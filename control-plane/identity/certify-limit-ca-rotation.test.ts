import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { createCsr, generateKeyPair, splitPemCerts } from '../../certs/index.js';
import { parseExtensions } from '../../certs/x509.js';
import { FakeClock } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import type { Authenticator } from './authenticator.js';
import { BootstrapTokenAuthenticator } from './bootstrap-token-authenticator.js';
import { parseCertifyState } from './certify-limiter.js';
import type { CertifyLimitSettings } from './certify-limit-settings.js';
import { IdentityMetrics } from './identity-metrics.js';
import { CertifyError, IdentityService } from './identity-service.js';
import { generateIssuer, type Issuer } from './issuer.js';

/**
 * The Certify limit's key for a bootstrap token, and for a pod whose TokenReview names no UID,
 * was the issuing CA's keyed digest (an HMAC under a key derived from the CA's private key).
 * When the issuer rotated (issuer-reloader.ts swaps in a CA with another key), the token's
 * next Certify had a key apart from the one its certificates from before carry and renew
 * from: a full bucket beside the spent one, one budget more per rotation (adv59; pods with a
 * UID were made CA-independent in adv48). The keys are now the same under every CA. Real
 * IdentityService, real CAs, a bootstrap token file's authenticator.
 */
const ID = 'spiffe://cluster.local/ns/shop/sa/web';
const TOKEN = 'fleet-token-0123456789abcdef';

/** An issuer that rotates in place, as ReloadingIssuer does: another CA (another key) from `rotate()` on. */
function rotatingIssuer(): Issuer & { rotate(): void } {
  let current = generateIssuer('cluster.local');
  return {
    get ca() {
      return current.ca;
    },
    get trustBundlePem() {
      return current.trustBundlePem;
    },
    source: 'test',
    snapshot: () => current,
    rotate() {
      current = generateIssuer('cluster.local');
    },
  };
}

function service(issuer: Issuer, authenticator: Authenticator, certifyLimit: CertifyLimitSettings): IdentityService {
  return new IdentityService({ issuer, authenticator, clock: new FakeClock(Date.now()), logger: silentLogger, metrics: new IdentityMetrics(new Registry(), issuer), certifyLimit });
}

/** The key the certificate it got was charged to (its carried state), or the refusal's status. */
async function certify(s: IdentityService, token: string): Promise<string | grpc.status> {
  try {
    const r = await s.certify({ identity: ID, token: Buffer.from(token), csrPem: createCsr(generateKeyPair().privateKeyPem, ID), requestedLifetimeMs: 0 });
    return parseCertifyState(parseExtensions(new X509Certificate(splitPemCerts(r.certChainPem)[0]).raw).certifyState)!.key;
  } catch (e) {
    expect(e).toBeInstanceOf(CertifyError);
    return (e as CertifyError).status;
  }
}

const noUidPod: Authenticator = { name: 'fake', authenticate: async () => ({ namespace: 'shop', serviceAccount: 'web', via: 'tokenreview', pod: 'web-0' }) };

test.each([
  ['a bootstrap token', () => new BootstrapTokenAuthenticator([{ token: TOKEN, namespace: 'shop', serviceAccount: 'web' }]), { bootstrapToken: { burst: 2, refillMs: 3_600_000 } }],
  ['a pod whose TokenReview names no UID', () => noUidPod, { burst: 2, refillMs: 3_600_000 }],
] as const)('%s: its budget spent under one CA stays spent after the issuer rotates; its key is the same under every CA', async (_, authenticator, limit) => {
  const issuer = rotatingIssuer();
  const s = service(issuer, authenticator(), limit);
  const first = await certify(s, TOKEN);
  expect(typeof first).toBe('string');
  expect(await certify(s, TOKEN)).toBe(first);
  expect(await certify(s, TOKEN)).toBe(grpc.status.RESOURCE_EXHAUSTED);
  issuer.rotate();
  // Before: the new CA's HMAC made another key, with a full bucket.
  expect(await certify(s, TOKEN)).toBe(grpc.status.RESOURCE_EXHAUSTED);
  // Another replica under the rotated CA (no bucket of its own yet) writes the same key into what it signs.
  expect(await certify(service(issuer, authenticator(), limit), TOKEN)).toBe(first);
});
