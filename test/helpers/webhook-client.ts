import { request } from 'node:https';
import type { TLSSocket } from 'node:tls';

export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The webhook Service's DNS name, which the API server checks the serving certificate against. */
export const WEBHOOK_HOST = 'wren-control-plane.wren-system.svc';

/**
 * An HTTPS call that verifies the webhook like the API server does (caBundle + Service DNS
 * name), on a fresh connection each time so a rotated serving certificate is seen.
 * `subject` is the serving certificate's O field; `json` is undefined when the body is not JSON.
 */
export function callWebhook(port: number, ca: string, method: string, path: string, body?: string): Promise<{ status: number; json: Json | undefined; text: string; subject: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method, path, ca, servername: WEBHOOK_HOST, agent: false, headers: { 'content-type': 'application/json' } },
      (res) => {
        const subject = String((res.socket as TLSSocket).getPeerCertificate().subject?.O ?? '');
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => {
          let json: Json | undefined;
          try {
            json = JSON.parse(text) as Json;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, json, text, subject });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
