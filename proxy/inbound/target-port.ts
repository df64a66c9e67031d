/**
 * The app port a peer asks us to deliver to. Only ports of the local app are valid:
 * the proxy's own ports are refused so a caller cannot loop traffic through the
 * proxy or reach its admin endpoint.
 */
export function parseTargetPort(raw: unknown, reserved: ReadonlySet<number>): number | Error {
  const s = Array.isArray(raw) ? raw[0] : raw;
  if (typeof s !== 'string' || !/^\d{1,5}$/.test(s)) return new Error('missing or malformed target port');
  const port = Number(s);
  if (port < 1 || port > 65535) return new Error(`target port ${port} out of range`);
  if (reserved.has(port)) return new Error(`target port ${port} is reserved for the proxy`);
  return port;
}
