import type { X509Certificate } from 'node:crypto';

/**
 * The DNS name the API server calls the injector webhook by, and checks its serving
 * certificate against: the control plane's Service in its namespace
 * (manifests/install/40-injector-webhook.yaml, clientConfig.service).
 */
export function webhookServiceHost(namespace: string): string {
  return `wren-control-plane.${namespace}.svc`;
}

/**
 * Whether the API server takes `cert` for `host`: by its subjectAltName only. Go's
 * crypto/x509 (the API server's) ignores the subject CN since Go 1.15 ("x509: certificate
 * relies on legacy Common Name field"), so a certificate naming the Service only in its CN
 * is refused, and so it is here, by the webhook's own warning and by `wren check`.
 */
export function namesHost(cert: X509Certificate, host: string): boolean {
  return cert.checkHost(host, { subject: 'never' }) !== undefined;
}
