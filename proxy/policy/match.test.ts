import { withTrustDomains } from './match.js';

/**
 * Istio's TestReplaceTrustDomainAliases cases (pilot/pkg/security/trustdomain/bundle_test.go):
 * the local trust domain first, then its aliases. Wren has no aliases of its own (one
 * trust domain, the proxy's identity.trustDomain), but the function is Istio's and keeps
 * its semantics for a list.
 */
describe('withTrustDomains (Istio Bundle.ReplaceTrustDomainAliases)', () => {
  test.each([
    ['no aliases, the local trust domain is cluster.local', ['cluster.local'], ['cluster.local/ns/foo/sa/bar'], ['cluster.local/ns/foo/sa/bar']],
    ['principal "*"', ['cluster.local'], ['*'], ['*']],
    ['trust domain "*"', ['cluster.local'], ['*/ns/foo/sa/bar'], ['*/ns/foo/sa/bar']],
    ['one alias, one principal', ['td2', 'td1'], ['td1/ns/foo/sa/bar'], ['td2/ns/foo/sa/bar', 'td1/ns/foo/sa/bar']],
    ['alias cluster.local, two principals', ['td1', 'cluster.local'], ['cluster.local/ns/foo/sa/bar', 'cluster.local/ns/yyy/sa/zzz'], ['td1/ns/foo/sa/bar', 'cluster.local/ns/foo/sa/bar', 'td1/ns/yyy/sa/zzz', 'cluster.local/ns/yyy/sa/zzz']],
    ['principals with "*" kept as they are', ['td1', 'cluster.local'], ['*/ns/foo/sa/bar', '*sa/zzz', '*'], ['*/ns/foo/sa/bar', '*sa/zzz', '*']],
    ['two aliases, two principals', ['td2', 'td1', 'cluster.local'], ['cluster.local/ns/foo/sa/bar', 'td1/ns/yyy/sa/zzz'], ['td2/ns/foo/sa/bar', 'td1/ns/foo/sa/bar', 'cluster.local/ns/foo/sa/bar', 'td2/ns/yyy/sa/zzz', 'td1/ns/yyy/sa/zzz', 'cluster.local/ns/yyy/sa/zzz']],
    ['a trust-domain pattern kept for the alias it matches', ['td2', 'foo-td1', 'cluster.local'], ['*-td1/ns/foo/sa/bar'], ['td2/ns/foo/sa/bar', '*-td1/ns/foo/sa/bar', 'cluster.local/ns/foo/sa/bar']],
    ['a foreign trust domain is kept', ['td1', 'td2'], ['some-td/ns/foo/sa/bar'], ['some-td/ns/foo/sa/bar']],
    ['a principal of an alias', ['td1', 'td2', 'some-td'], ['some-td/ns/foo/sa/bar'], ['td1/ns/foo/sa/bar', 'td2/ns/foo/sa/bar', 'some-td/ns/foo/sa/bar']],
    ['one principal of an alias, one foreign', ['new-td', 'td2', 'td3'], ['td1/ns/some-ns/sa/some-sa', 'td2/ns/foo/sa/bar'], ['td1/ns/some-ns/sa/some-sa', 'new-td/ns/foo/sa/bar', 'td2/ns/foo/sa/bar', 'td3/ns/foo/sa/bar']],
  ])('%s', (_name, trustDomains, principals, want) => {
    expect(withTrustDomains(principals, trustDomains)).toEqual(want);
  });

  // adv9 D1: with trust domain example.org a DENY on cluster.local/ns/X/sa/Y never matched.
  test('cluster.local stands for the local trust domain; Wren keeps the literal one too (its peers\' trust domain is not checked)', () => {
    expect(withTrustDomains(['cluster.local/ns/foo/sa/bar'], ['example.org'])).toEqual(['example.org/ns/foo/sa/bar', 'cluster.local/ns/foo/sa/bar']);
    expect(withTrustDomains(['cluster.local/ns/foo/sa/*'], ['example.org'])).toEqual(['example.org/ns/foo/sa/*', 'cluster.local/ns/foo/sa/*']);
    // The local trust domain written out is not widened to cluster.local; other shapes are kept as written.
    expect(withTrustDomains(['example.org/ns/foo/sa/bar'], ['example.org'])).toEqual(['example.org/ns/foo/sa/bar']);
    expect(withTrustDomains(['cluster.local/ns/foo/*', '*/ns/foo/sa/bar', 'cluster.local/x'], ['example.org'])).toEqual(['cluster.local/ns/foo/*', '*/ns/foo/sa/bar', 'cluster.local/x']);
  });
});
