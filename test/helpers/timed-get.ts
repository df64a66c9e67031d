import { request } from 'node:http';

/** What timedGet saw: the status (0: no response), the body received, whether the response completed, and how long it took. */
export interface TimedReply {
  readonly status: number;
  readonly body: string;
  readonly complete: boolean;
  readonly ms: number;
}

/**
 * A GET to a sidecar's outbound port for `host` on a fresh connection that never rejects:
 * a reset or aborted response resolves with what arrived and `complete: false` (the suites
 * check how a timeout cut a response, and when).
 */
export function timedGet(port: number, path: string, host = 'web'): Promise<TimedReply> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, complete: res.complete, ms: Date.now() - t0 }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, body, complete: false, ms: Date.now() - t0 }));
      res.on('aborted', () => resolve({ status: res.statusCode ?? 0, body, complete: false, ms: Date.now() - t0 }));
    });
    req.on('error', () => resolve({ status: 0, body: '', complete: false, ms: Date.now() - t0 }));
    req.end();
  });
}
