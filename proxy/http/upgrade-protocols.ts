/**
 * The Upgrade protocols a request may carry through the mesh: everything offered except
 * `h2c`. RFC 9113 section 3.1 deprecates the h2c upgrade, and an h2c connection switched
 * to behind the proxy would carry HTTP/2 requests the sidecar never parses (no header
 * rules, no authorization per request). Envoy likewise strips h2c from Upgrade. Returns
 * the remaining comma-separated list ('' when h2c was all that was offered).
 */
export function withoutH2c(upgrade: string): string {
  if (!/h2c/i.test(upgrade)) return upgrade;
  return upgrade
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '' && p.split('/')[0].toLowerCase() !== 'h2c')
    .join(', ');
}
