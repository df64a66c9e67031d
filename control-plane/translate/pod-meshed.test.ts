import type { V1Pod } from '@kubernetes/client-node';
import { injectPod } from '../injector/inject-pod.js';
import { applyPatch } from '../injector/json-patch.js';
import { parsePod } from './k8s-objects.js';

/**
 * Meshed means "has the sidecar" (found by adversary4).
 *
 * What a user does: labels a pod `wren.io/inject: enabled` (the documented opt-in) and the
 * pod ends up WITHOUT a sidecar, in any of the ways the injector itself documents:
 *  - the webhook was unreachable when the pod was created, under failurePolicy Ignore
 *    (manifests/components/injector-fail-open; the install's Fail refuses such a pod);
 *  - its namespace is labelled `wren.io/inject: disabled` ("disabled on the namespace always
 *    wins", inject-pod.ts decide());
 *  - it is a hostNetwork pod, or in kube-system / wren-system (never injected, docs/kubernetes.md
 *    "Who is injected");
 *  - it opts in by ANNOTATION only in an unlabelled namespace: the object webhook's
 *    objectSelector sees labels only, so the webhook is never called.
 *
 * What happened: the control plane's parsePod (control-plane/translate/k8s-objects.ts) calls a
 * pod meshed when it merely carries the opt-in label/annotation, so its endpoints go out with
 * proxy_port 15006 and the pod's SPIFFE identity. Every meshed client then dials
 * <podIP>:15006 with mTLS where no proxy listens: the pod is unreachable from the mesh
 * (connection refused / TLS failure) while it is healthy and serving in plaintext. The
 * fail-open failurePolicy turns into an outage of exactly the pods it let through.
 *
 * What happens now: "meshed" means "has a sidecar": the marker the injector writes
 * (`wren.io/injected`, or the wren-proxy container), as Linkerd decides from the injected
 * proxy (linkerd.io/proxy-version annotation), not from the opt-in request. An un-injected
 * pod is sent plaintext (docs/kubernetes.md: "without proxyPort is not meshed: traffic to
 * it is sent directly").
 */
const pod = (extra: Partial<V1Pod['spec']> = {}): V1Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'web-0', namespace: 'shop', labels: { app: 'web', 'wren.io/inject': 'enabled' } },
  spec: { containers: [{ name: 'app', image: 'web:1', ports: [{ containerPort: 8080 }] }], ...extra },
});

test.each([
  ['webhook unreachable (failurePolicy Ignore): the pod is created unpatched', pod(), null],
  ['namespace labelled disabled (disabled wins)', pod(), { 'wren.io/inject': 'disabled' }],
  ['hostNetwork pod', pod({ hostNetwork: true }), undefined],
  ['kube-system pod (excluded by both webhooks\' namespaceSelector)', { ...pod(), metadata: { ...pod().metadata, namespace: 'kube-system' } }, null],
  [
    'annotation-only opt-in in an unlabelled namespace (objectSelector sees labels only)',
    { ...pod(), metadata: { name: 'web-0', namespace: 'shop', labels: { app: 'web' }, annotations: { 'wren.io/inject': 'enabled' } } },
    null,
  ],
] as const)('%s: a pod the injector gave no sidecar is not advertised as meshed', (_why, p, nsLabels) => {
  if (nsLabels !== null) {
    const res = injectPod(p, nsLabels === undefined ? {} : { namespaceLabels: nsLabels });
    expect(res.injected).toBe(false);
  }
  // The pod as the API server stores it (no patch applied): no wren-proxy, no wren.io/injected.
  const k = parsePod(JSON.parse(JSON.stringify(p)), '');
  expect({ meshed: k.meshed, proxyPort: k.proxyPort }).toEqual({ meshed: false, proxyPort: null });
});

/** The injector and the control plane agree on what the sidecar is: an injected pod is meshed, in both modes. */
test.each([
  ['native sidecar (init container, restartPolicy Always)', true, {}, 15006],
  ['classic sidecar container', false, {}, 15006],
  ['inbound port read from the sidecar\'s wren-inbound port', true, { inboundPort: 15106 }, 15106],
] as const)('%s: the injected pod is meshed', (_why, nativeSidecars, o, port) => {
  const p = pod();
  const res = injectPod(p, { nativeSidecars, ...o });
  expect(res.injected).toBe(true);
  expect(parsePod(applyPatch(p, res.patch), '')).toMatchObject({ meshed: true, proxyPort: port });
});

test('a wren-proxy init container that is not a native sidecar (no restartPolicy Always) is not the sidecar: it runs to completion', () => {
  const p = pod({ initContainers: [{ name: 'wren-proxy', image: 'wren:0.1.0' }] });
  expect(parsePod(p, '')).toMatchObject({ meshed: false, proxyPort: null });
});

test('the sidecar\'s declared wren-inbound port wins over the wren.io/proxy-port annotation, which serves a sidecar that declares none; alone it meshes nothing', () => {
  const annotated = (spec: Partial<V1Pod['spec']>, value = '15200'): V1Pod => ({ ...pod(spec), metadata: { ...pod().metadata, annotations: { 'wren.io/proxy-port': value } } });
  // The injector declares where its proxy listens: the annotation's port, or 15006 when it refused the value.
  expect(parsePod(annotated({ containers: [{ name: 'wren-proxy', ports: [{ name: 'wren-inbound', containerPort: 15106 }] }, { name: 'app' }] }), '')).toMatchObject({ meshed: true, proxyPort: 15106 });
  // A refused value (the admin port, or no port) beside a declared port: the declared one, and the pod is not refused.
  expect(parsePod(annotated({ containers: [{ name: 'wren-proxy', ports: [{ name: 'wren-inbound', containerPort: 15006 }] }] }, '15000'), '')).toMatchObject({ meshed: true, proxyPort: 15006 });
  expect(parsePod(annotated({ containers: [{ name: 'wren-proxy', ports: [{ name: 'wren-inbound', containerPort: 15006 }] }] }, 'inbound'), '')).toMatchObject({ meshed: true, proxyPort: 15006 });
  // A sidecar that declares no port: the annotation, checked.
  expect(parsePod(annotated({ containers: [{ name: 'wren-proxy' }, { name: 'app' }] }), '')).toMatchObject({ meshed: true, proxyPort: 15200 });
  expect(() => parsePod(annotated({ containers: [{ name: 'wren-proxy' }] }, 'inbound'), '')).toThrow('metadata.annotations["wren.io/proxy-port"]: expected a port number, got "inbound"');
  expect(parsePod(annotated({}), '')).toMatchObject({ meshed: false, proxyPort: null });
});
