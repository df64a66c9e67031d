import { parseTrafficPolicyResource } from '../../control-plane/translate/k8s-objects.js';
import { validateResource } from '../../manifests/validate.js';

/**
 * What the CRD's schema (the API server's answer) and the control plane's parser each say of
 * a TrafficPolicy for shop/web with `policy`: 'admitted', or the CRD's errors and the parser's
 * message (both name the field path).
 */
export function trafficPolicyRefusals(policy: Record<string, unknown>, name = 'tp'): { crd: unknown; parser: string } {
  const r = { apiVersion: 'policy.wren.io/v1alpha1', kind: 'TrafficPolicy', metadata: { name, namespace: 'shop' }, spec: { targetRef: { kind: 'Service', name: 'web' }, policy } };
  const crd = validateResource(r);
  let parser = 'admitted';
  try {
    parseTrafficPolicyResource(r, '');
  } catch (e) {
    parser = (e as Error).message;
  }
  return { crd: crd.ok ? 'admitted' : crd.errors, parser };
}
