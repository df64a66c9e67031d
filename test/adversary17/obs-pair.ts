import { Writable } from 'node:stream';
import type { Socket } from 'node:net';
import { scrape, type Series } from '../helpers/admin-metric.js';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * A client sidecar (workload client-v2) and a server sidecar (web-v1) with access logs
 * captured, for the telemetry tests of this directory: `services` are built with the
 * server sidecar in front of the given app ports.
 */
export interface ObsPair {
  readonly client: Proxy;
  readonly server: Proxy;
  readonly clientLines: string[];
  readonly serverLines: string[];
  /** SO_ORIGINAL_DST of the client's next redirected connection (opaque TCP). */
  nextDst: { address: string; port: number } | undefined;
  close(): Promise<void>;
}

/** `unmeshed`: the endpoint is the app itself, no server sidecar in front (proxyPort null). */
export type ServiceSpec = { name: string; port: number; appPort: number; extra?: Record<string, unknown>; unmeshed?: boolean };

export async function obsPair(services: readonly ServiceSpec[]): Promise<ObsPair> {
  const pki = testPki();
  const clientLines: string[] = [];
  const serverLines: string[] = [];
  const sink = (arr: string[]) => new Writable({ write(c, _e, cb) { arr.push(...String(c).split('\n').filter((l) => l)); cb(); } });
  const config = (sa: string, workload: Record<string, string>) => ({
    identity: { namespace: 'default', serviceAccount: sa, trustDomain: pki.trustDomain, workload },
    telemetry: { accessLog: { enabled: true } },
  });
  const server = await startProxy({ pki, serviceAccount: 'web', config: config('web', { name: 'web-v1', app: 'web', version: 'v1' }), accessLog: sink(serverLines) });
  const pair: ObsPair = {
    client: undefined as unknown as Proxy, server, clientLines, serverLines, nextDst: undefined,
    async close() {
      await pair.client.close();
      await server.close();
    },
  };
  (pair as { client: Proxy }).client = await startProxy({
    pki, serviceAccount: 'client', config: config('client', { name: 'client-v2', app: 'client', version: 'v2' }), accessLog: sink(clientLines),
    services: services.map((s) => meshService(s.name, s.port, [{ appPort: s.appPort, proxy: s.unmeshed ? null : server, workload: { name: 'web-v1', app: 'web', version: 'v1' } }], s.extra)),
    originalDst: (_s: Socket) => pair.nextDst,
  });
  return pair;
}


/** Waits (bounded) until `pred` holds for the samples of `name`; returns them. */
export async function until(p: Proxy, name: string, pred: (s: Series[]) => boolean): Promise<Series[]> {
  let s: Series[] = [];
  for (let i = 0; i < 150; i++) {
    s = await scrape(p, name);
    if (pred(s)) return s;
    await new Promise((r) => setTimeout(r, 20));
  }
  return s;
}

/** Waits (bounded) for an access log line matching `pred`. */
export async function lineOf(lines: string[], pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown> | undefined> {
  for (let i = 0; i < 150; i++) {
    const l = lines.map((x) => JSON.parse(x) as Record<string, unknown>).find(pred);
    if (l) return l;
    await new Promise((r) => setTimeout(r, 20));
  }
  return undefined;
}
