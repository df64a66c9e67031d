import { isIP } from 'node:net';

/**
 * Why an admin request is refused for its Host header, or null if it may be answered.
 *
 * DNS rebinding: a page on evil.example re-resolves its own name to 127.0.0.1 and then
 * reads http://evil.example:15000/config_dump as same-origin; the only trace of the trick
 * on the wire is `Host: evil.example:15000`. The admin ports serve key-adjacent state
 * (certificates, trust anchors, configuration), so they answer only a Host a rebinding
 * page cannot produce:
 * - `localhost` (RFC 6761 section 6.3: browsers resolve it to loopback themselves, never
 *   through DNS an attacker controls);
 * - any IP literal (`127.0.0.1:15000`, `[::1]:15000`, the bound address, a pod IP): a
 *   browser sends an IP literal only to the origin of that very IP, which no attacker's
 *   name can rebind. This keeps kubelet's httpGet probes (Host: pod IP:port) and
 *   Prometheus scrapes by pod IP working without exempting any path;
 * - no Host at all (HTTP/1.0): browsers always send one.
 * Envoy's admin has no such check; Istio's and Linkerd's debug endpoints bind localhost.
 */
export function adminHostRefusal(host: string | undefined): string | null {
  if (host === undefined || host === '') return null;
  const h = host.toLowerCase();
  let name: string;
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    name = end < 0 ? h : h.slice(1, end);
    if (isIP(name) === 6) return null;
  } else {
    const colon = h.lastIndexOf(':');
    name = colon < 0 ? h : h.slice(0, colon);
    if (name.endsWith('.')) name = name.slice(0, -1);
    if (name === 'localhost' || isIP(name) === 4) return null;
  }
  return `the admin port answers only requests for localhost or an IP address, not Host: ${host} (DNS rebinding protection; use http://127.0.0.1:PORT/)`;
}
