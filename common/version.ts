/**
 * This build's Wren release. Proxies report it in Subscribe.proxy_version so
 * `wren proxy-status` can show which release each sidecar runs (istioctl proxy-status's
 * VERSION column). Kept equal to package.json's "version" by common/version.test.ts.
 */
export const WREN_VERSION = '0.1.0';
