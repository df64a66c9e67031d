import { isIP } from 'node:net';

/**
 * The source a gRPC call is counted against (grpc-js's getPeer: `ADDRESS:PORT`, an IPv6
 * address bracketed or not): an IPv4 address as itself, an IPv4-mapped IPv6 address
 * (`::ffff:a.b.c.d`, a dual-stack socket's IPv4 client) as its IPv4, any other IPv6 address as
 * its /64 (`2001:db8:1:2::/64`); null for loopback or an address it cannot tell. What the
 * per-address shares count by: a plaintext control plane's streams (discovery-server.ts
 * MAX_PLAINTEXT_STREAMS_PER_ADDRESS) and the TokenReviews of Certify calls
 * (token-review-authenticator.ts maxInFlightPerSource). Loopback is not an address to share
 * by: every local process (a test, a sidecar on the same host) is one.
 *
 * Why a /64: it is the smallest prefix an IPv6 host is given (RFC 4291 §2.5.1 and RFC 7421:
 * interface identifiers are 64 bits, SLAAC picks them itself, RFC 8981 privacy addresses change
 * them at will; a Kubernetes node's pod range or a cloud VM's delegation is a /64 or more).
 * Counted per address, one host with a /64 spread its streams and TokenReviews over 2^64
 * sources, each with a full share (adv59). Rate limiters key IPv6 clients the same way (nginx
 * and Envoy's local rate limit descriptors by a masked prefix, Cloudflare by /64). IPv4-mapped
 * addresses stay per IPv4 address: the whole IPv4 space is one /64 there (::ffff:0:0/96).
 */
export function sourceAddress(peer: string): string | null {
  const address = peer.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  const family = isIP(address);
  if (family === 4) return address.startsWith('127.') ? null : address;
  if (family !== 6) return null;
  const g = ipv6Groups(address);
  if (g === null) return null;
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    const v4 = `${g[6] >> 8}.${g[6] & 0xff}.${g[7] >> 8}.${g[7] & 0xff}`;
    return v4.startsWith('127.') ? null : v4;
  }
  if (g.every((x, i) => x === (i === 7 ? 1 : 0))) return null; // ::1
  // The RFC 5952 text of the prefix: the four groups in lower-case hex without leading zeros,
  // a run of zero groups at the end as `::` (a run inside is left as is: one spelling per prefix).
  const head = g.slice(0, 4);
  while (head.length > 0 && head[head.length - 1] === 0) head.pop();
  return `${head.map((x) => x.toString(16)).join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address isIP accepted (`::` and a trailing dotted IPv4 expanded), or null. */
function ipv6Groups(address: string): number[] | null {
  let text = address;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number);
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [left, right, ...more] = text.split('::');
  if (more.length > 0) return null;
  const parse = (s: string | undefined): number[] => (s ? s.split(':').map((x) => parseInt(x, 16)) : []);
  const l = parse(left);
  const r = right === undefined ? [] : parse(right);
  const zeros = right === undefined ? 0 : 8 - l.length - r.length;
  const groups = [...l, ...new Array<number>(Math.max(0, zeros)).fill(0), ...r];
  return groups.length === 8 && groups.every((x) => Number.isInteger(x) && x >= 0 && x <= 0xffff) ? groups : null;
}
