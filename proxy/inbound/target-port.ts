/**
 * The app port a peer asks us to deliver to. Only ports of the local app are valid:
 * the proxy's own ports are refused so a caller cannot loop traffic through the
 * proxy or reach its admin endpoint.
 */
export function parseTargetPort(raw: unknown, reserved: ReadonlySet<number>): number | Error {
  const s = Array.isArray(raw) ? raw[0] : raw;
  if (typeof s !== 'string' || !digits(s)) return new Error('missing or malformed target port');
  const port = Number(s);
  if (port < 1 || port > 65535) return new Error(`target port ${port} out of range`);
  if (reserved.has(port)) return new Error(`target port ${port} is reserved for the proxy`);
  return port;
}

/**
 * 1 to 5 ASCII digits (what `/^\d{1,5}$/` says), by a loop: every mesh request names its
 * port, and the regular expression's test was 0.4 % of an inbound sidecar's samples at
 * HTTP/1.1 saturation.
 */
function digits(s: string): boolean {
  const n = s.length;
  if (n === 0 || n > 5) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}
