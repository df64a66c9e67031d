/**
 * Reads the shipped Grafana dashboards (manifests/dashboards/*.json) the way Grafana does
 * for the parts a test can check against Prometheus: every panel's targets[].expr (rows
 * and nested panels included), the query template variables, and Grafana's variable
 * interpolation (https://grafana.com/docs/grafana/latest/dashboards/variables/variable-syntax/):
 * `$name`, `${name}`, `${name:fmt}` and `[[name]]`, plus the global interval variables.
 */
import { dashboardFiles } from '../../scripts/dashboards-configmap.mjs';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface DashboardQuery {
  readonly dashboard: string;
  /** "Row title / Panel title" */
  readonly panel: string;
  readonly refId: string;
  readonly expr: string;
}

export interface QueryVariable {
  readonly name: string;
  readonly query: string;
  /** Grafana's regex option: applied to each value, the first capture group is the value. */
  readonly regex: string;
}

export interface Dashboard {
  readonly file: string;
  readonly title: string;
  readonly queries: readonly DashboardQuery[];
  readonly variables: readonly QueryVariable[];
}

export function loadDashboards(): Dashboard[] {
  return dashboardFiles().map(({ file, text }) => {
    const d = JSON.parse(text) as Json;
    const queries: DashboardQuery[] = [];
    const walk = (panels: Json[] | undefined, row: string) => {
      for (const p of panels ?? []) {
        if (p.type === 'row') {
          walk(p.panels, p.title);
          row = p.title;
          continue;
        }
        for (const t of p.targets ?? []) if (typeof t.expr === 'string') queries.push({ dashboard: d.title, panel: `${row} / ${p.title}`, refId: t.refId, expr: t.expr });
        walk(p.panels, row);
      }
    };
    walk(d.panels, '');
    const variables = ((d.templating?.list ?? []) as Json[])
      .filter((v) => v.type === 'query')
      .map((v) => ({ name: v.name as string, query: (typeof v.query === 'string' ? v.query : v.query.query) as string, regex: (v.regex ?? '') as string }));
    return { file, title: d.title, queries, variables };
  });
}

/**
 * Grafana's interpolation of `text` with `values` (the dashboard's variables) and the
 * interval variables a panel gets from its time range: `$__rate_interval` is at least four
 * scrape intervals in Grafana; the test gives every range a minute, which holds all the
 * samples a short test collects at a 1 s scrape interval.
 */
export function interpolate(text: string, values: Readonly<Record<string, string>>): string {
  const all: Record<string, string> = { __rate_interval: '1m', __interval: '15s', __range: '5m', __range_s: '300', __range_ms: '300000', __interval_ms: '15000', ...values };
  const out = text.replace(/\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)/g, (m, a?: string, b?: string, c?: string) => {
    const name = (a ?? b ?? c)!;
    if (/^\d+$/.test(name)) return m; // $1: a label_replace capture reference, not a variable
    const v = all[name];
    if (v === undefined) throw new Error(`no value for variable ${m} in ${text}`);
    return v;
  });
  return out;
}

/** The PromQL metric names an expression reads (Wren's, Istio's and the process metrics). */
export function metricNames(expr: string): string[] {
  return [...new Set(expr.match(/\b(?:istio|wren|process|nodejs)_[a-zA-Z0-9_]+\b/g) ?? [])];
}
