import { request, type Agent } from 'node:http';

/**
 * One HTTP/1.1 GET to a sidecar's outbound port (or any loopback port) for `host`: resolves
 * with the response's status once its body is read, rejects on a connection error.
 */
export function statusOf(port: number, host: string, path = '/', agent?: Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host }, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}
