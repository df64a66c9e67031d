import { isIPv6 } from 'node:net';
import { parseCidrList } from '../../control-plane/injector/annotations.js';
import { injectPod } from '../../control-plane/injector/inject-pod.js';

/**
 * ADVERSARY: skip-cidr-invalid-ipv6
 *
 * What a user does: annotates a pod `wren.io/skip-outbound-cidrs: "fd00:::1/64"` (a typo:
 * three colons), or `1:2:3:4:5:6:7:8:9/128`, or `:/0`.
 *
 * What happens: parseCidrList (control-plane/injector/annotations.ts) accepts any string of
 * hex digits and colons that contains a colon as an IPv6 address, so the injector does not
 * warn and passes the value to the wren-init container (`wren iptables
 * --skip-outbound-cidrs ...`, which uses the same parser), where ip6tables-restore refuses
 * it ("host/network not found"): the init container fails and the pod never starts.
 * annotations.ts promises the opposite: "A malformed value never breaks pod creation: it
 * is ignored with a warning".
 *
 * What should happen: an item that is not an IPv6 address (RFC 4291 section 2.2 text
 * forms; node's net.isIPv6 is the oracle here) is malformed: the annotation is ignored
 * with an AdmissionReview warning and the pod starts.
 */
test.each(['fd00:::1/64', '1:2:3:4:5:6:7:8:9/128', ':/0', 'fffff::/16', '::1::2'])('%s is malformed: ignored with a warning, not handed to ip6tables', (cidr) => {
  expect(isIPv6(cidr.split('/')[0])).toBe(false);
  expect(parseCidrList(cidr)).toBeUndefined();
  const res = injectPod(
    { metadata: { name: 'p', namespace: 'shop', annotations: { 'wren.io/skip-outbound-cidrs': cidr } }, spec: { containers: [{ name: 'app', image: 'a' }] } },
    { namespaceLabels: { 'wren.io/inject': 'enabled' } },
  );
  expect(res.warnings.some((w) => w.startsWith('wren.io/skip-outbound-cidrs'))).toBe(true);
});
