import { A } from './annotations.js';

/**
 * The pod annotations that set the proxy's `telemetry` section, as the environment
 * variables proxy-config.ts PROXY_ENV maps to it. These are the proxy's own (local)
 * settings, so they win over the Telemetry resources the control plane pushes
 * (docs/observability.md, Telemetry settings). Like the other annotations, a malformed
 * value is ignored with a warning naming it (an AdmissionReview warning), the pod is
 * still created and the field is left to the Telemetry resources and the defaults.
 */
const PERCENT = /^(100(\.0+)?|\d{1,2}(\.\d+)?|\.\d+)$/;

export function telemetryEnv(ann: Readonly<Record<string, string>>, warnings: string[]): { name: string; value: string }[] {
  const env: { name: string; value: string }[] = [];
  const percent = (key: string, name: string) => {
    const v = ann[key];
    if (v === undefined) return;
    if (PERCENT.test(v.trim())) env.push({ name, value: String(Number(v.trim())) });
    else warnings.push(`${key}: ignoring ${JSON.stringify(v)} (expected a percentage from 0 to 100, like "1" or "0.5")`);
  };
  percent(A.tracingSampling, 'WREN_TRACING_SAMPLING');
  const log = ann[A.accessLog];
  if (log !== undefined) {
    if (log === 'true' || log === 'false') env.push({ name: 'WREN_ACCESS_LOG', value: log });
    else warnings.push(`${A.accessLog}: ignoring ${JSON.stringify(log)} (expected true or false)`);
  }
  percent(A.accessLogSampling, 'WREN_ACCESS_LOG_SAMPLING');
  return env;
}
