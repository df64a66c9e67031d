import type { IncomingMessage } from 'node:http';
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

/**
 * The request's URL and the authority it names, or why it is answered 400 (a bad
 * request is the client's, not a 500). Shared by both admin ports (the proxy's and the
 * control plane's), so both read a request's target and authority the same way.
 * - More than one Host is a 400 (RFC 9112 section 3.2); node keeps only the first.
 * - An origin-form target (`/path?query`) is the path as sent: `//config_dump` is a path
 *   (404), not a scheme-relative URL naming a host `config_dump`.
 * - An absolute-form target (`http://host/path`) names the authority itself, and a server
 *   takes it over the Host header (RFC 9112 section 3.2.2), so the DNS-rebinding check reads it.
 * - Anything else (`*`, authority-form, a target URL cannot parse) is a 400.
 */
export function requestTarget(req: IncomingMessage): { url: URL; host: string | undefined } | string {
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].toLowerCase() === 'host') hosts++;
  if (hosts > 1) return 'more than one Host header (RFC 9112 section 3.2)';
  const raw = req.url ?? '/';
  const shown = JSON.stringify(raw.length > 200 ? `${raw.slice(0, 200)}…` : raw);
  try {
    if (raw.startsWith('/')) return { url: new URL(`http://admin${raw}`), host: req.headers.host };
    if (/^https?:\/\//i.test(raw)) {
      const url = new URL(raw);
      return { url, host: url.host };
    }
  } catch {
    return `malformed request target ${shown}`;
  }
  return `unsupported request target ${shown}: the admin port takes a path (/ready) or an http:// URL`;
}
