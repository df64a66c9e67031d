import { MAX_REPORTED_ENDPOINTS, type Ejection, type EjectionKind } from '../../contract/discovery.js';
import type { Endpoint, Service } from '../../contract/model.js';

/**
 * HealthReports from proxies (contract/discovery.proto): validated against what the
 * reporter can observe, then kept per subscriber for /debug/health and /debug/proxies.
 *
 * A proxy observes only the endpoints it was sent. So an entry is kept only if it names a
 * service the reporter holds (its ACKed view, or the response in flight), a port of that
 * service, and an endpoint of that port. Everything else is dropped and counted: a forged
 * or stale entry must not count toward withdrawing an endpoint mesh-wide (the follow-up
 * to this, issue 14, acts on these reports). Strings are bounded, and so is the list
 * (MAX_REPORTED_ENDPOINTS, which proxies also send no more than).
 */

/**
 * "address|port" of a port's endpoints, made once per endpoints array. The store never
 * changes one (a commit makes new ones) and the views a report is checked against share them,
 * so the index lives as long as that array. Scanning the array per entry cost a report of
 * MAX_REPORTED_ENDPOINTS entries about 10^8 comparisons against a service of 10,000
 * endpoints (2 s of the control plane's only thread, per report, stalling every push).
 */
const endpointKeys = new WeakMap<readonly Endpoint[], ReadonlySet<string>>();
function endpointKeysOf(endpoints: readonly Endpoint[]): ReadonlySet<string> {
  let keys = endpointKeys.get(endpoints);
  if (!keys) endpointKeys.set(endpoints, (keys = new Set(endpoints.map((x) => `${x.address}|${x.port}`))));
  return keys;
}

const KINDS: ReadonlySet<string> = new Set<EjectionKind>(['outlier-ejection', 'health-check-failed', 'breaker-open', 'connect-failure']);

export interface ValidatedReport {
  readonly accepted: readonly Ejection[];
  /** Why each dropped entry was dropped (first few only, for the log). */
  readonly rejected: number;
  readonly examples: readonly string[];
}

export function validateHealthReport(entries: readonly Partial<Ejection>[] | undefined, views: readonly ReadonlyMap<string, Service>[]): ValidatedReport {
  const accepted: Ejection[] = [];
  const examples: string[] = [];
  let rejected = 0;
  const reject = (why: string) => {
    rejected++;
    if (examples.length < 5) examples.push(why);
  };
  const list = entries ?? [];
  if (list.length > MAX_REPORTED_ENDPOINTS) reject(`${list.length - MAX_REPORTED_ENDPOINTS} entries over the limit of ${MAX_REPORTED_ENDPOINTS}`);
  for (const e of list.slice(0, MAX_REPORTED_ENDPOINTS)) {
    const service = String(e?.service ?? '').slice(0, 300);
    const where = `${service}:${Number(e?.servicePort)} ${String(e?.address ?? '').slice(0, 64)}:${Number(e?.port)}`;
    if (!KINDS.has(String(e?.kind))) {
      reject(`${where}: unknown kind ${JSON.stringify(String(e?.kind).slice(0, 40))}`);
      continue;
    }
    const key = `${String(e.address)}|${Number(e.port)}`;
    const known = views.some((v) => v.get(service)?.ports.some((p) => p.port === e.servicePort && endpointKeysOf(p.endpoints).has(key)));
    if (!known) {
      reject(`${where}: not an endpoint the proxy was sent`);
      continue;
    }
    accepted.push(
      Object.freeze({
        service, servicePort: e.servicePort!, address: e.address!, port: e.port!, kind: e.kind as EjectionKind,
        reason: String(e.reason ?? '').slice(0, 64), ejectedForMs: Math.max(0, Number(e.ejectedForMs) || 0),
      }),
    );
  }
  return { accepted: Object.freeze(accepted), rejected, examples };
}

export interface HealthRow {
  readonly service: string;
  readonly servicePort: number;
  readonly address: string;
  readonly port: number;
  readonly reporters: readonly {
    readonly identity: string;
    readonly pod: string;
    readonly kind: EjectionKind;
    readonly reason: string;
    readonly ejectedForMs: number;
    readonly reportedAt: string;
  }[];
}

/** One row per reported endpoint, with every proxy that reports it (GET /debug/health). */
export function healthRows(
  reports: Iterable<{ identity: string; pod: string; at: number; ejections: readonly Ejection[] }>,
): HealthRow[] {
  const rows = new Map<string, HealthRow & { reporters: HealthRow['reporters'][number][] }>();
  for (const r of reports)
    for (const e of r.ejections) {
      const key = `${e.service}|${e.servicePort}|${e.address}|${e.port}`;
      let row = rows.get(key);
      if (!row) rows.set(key, (row = { service: e.service, servicePort: e.servicePort, address: e.address, port: e.port, reporters: [] }));
      row.reporters.push({ identity: r.identity, pod: r.pod, kind: e.kind, reason: e.reason, ejectedForMs: e.ejectedForMs, reportedAt: new Date(r.at).toISOString() });
    }
  return [...rows.values()].sort((a, b) => (a.service < b.service ? -1 : a.service > b.service ? 1 : a.address < b.address ? -1 : 1));
}
