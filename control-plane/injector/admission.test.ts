import fjp from 'fast-json-patch';
import { AdmissionError, mutate, mutateWithReason } from './admission.js';

const review = (object: unknown, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: { uid: 'u-1', kind: { group: '', version: 'v1', kind: 'Pod' }, operation: 'CREATE', namespace: 'demo', object, ...extra },
});
const pod = { metadata: { generateName: 'web-' }, spec: { containers: [{ name: 'app', image: 'a' }] } };

test('answers with the request uid and a base64 JSONPatch that applies to the pod', () => {
  const r = mutate(review(pod));
  expect(r).toMatchObject({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'u-1', allowed: true, patchType: 'JSONPatch' } });
  const ops = JSON.parse(Buffer.from(r.response!.patch!, 'base64').toString('utf8'));
  const out = fjp.applyPatch(structuredClone(pod), ops, true, false).newDocument as unknown as { spec: { initContainers: { name: string }[] } };
  expect(out.spec.initContainers.map((c) => c.name)).toEqual(['wren-init', 'wren-proxy']);
});

test('allowed without a patch when not a pod, not CREATE, opted out or already injected', () => {
  expect(mutate(review(pod, { kind: { group: '', version: 'v1', kind: 'Service' } })).response).toEqual({ uid: 'u-1', allowed: true });
  expect(mutate(review(pod, { operation: 'UPDATE' })).response).toEqual({ uid: 'u-1', allowed: true });
  const off = { ...pod, metadata: { labels: { 'wren.io/inject': 'disabled' } } };
  expect(mutateWithReason(review(off))).toMatchObject({ injected: false, review: { response: { uid: 'u-1', allowed: true } } });
  expect(mutate(review(off)).response?.patch).toBeUndefined();
});

test('warnings for malformed annotations are passed back to kubectl', () => {
  const p = { ...pod, metadata: { annotations: { 'wren.io/proxy-cpu-limit': 'fast' } } };
  expect(mutate(review(p)).response?.warnings).toEqual(['wren.io/proxy-cpu-limit: ignoring malformed quantity "fast"']);
});

/** The pod as the API server stores it: the response's patch applied with fast-json-patch (every op validated). */
const patched = (object: unknown): { metadata?: { annotations?: Record<string, string> }; spec?: unknown } => {
  const r = mutate(review(object)).response!;
  return r.patch ? fjp.applyPatch(structuredClone(object), JSON.parse(Buffer.from(r.patch, 'base64').toString('utf8')), true, false).newDocument as never : object as never;
};
const owned = { name: 'web-7d9c', kind: 'ReplicaSet', apiVersion: 'apps/v1', uid: 'r-1', controller: true };

test('a controller\'s pod keeps the warnings in wren.io/inject-warnings: the API server returns them to the ReplicaSet controller, not the user', () => {
  const p = { ...pod, metadata: { generateName: 'web-7d9c-', ownerReferences: [owned], annotations: { 'wren.io/proxy-cpu-limit': 'fast', 'wren.io/proxy-log-level': 'loud' } } };
  const out = patched(p);
  expect(out.metadata?.annotations?.['wren.io/inject-warnings']).toBe('wren.io/proxy-cpu-limit: ignoring malformed quantity "fast"\nwren.io/proxy-log-level: ignoring "loud" (expected debug, info, warn or error)');
  expect(out.metadata?.annotations?.['wren.io/injected']).toBe('true');
  // No warning, no annotation.
  expect(patched(pod).metadata?.annotations?.['wren.io/inject-warnings']).toBeUndefined();
});

test('a pod not injected because of what it asked keeps the warning saying why, whether it had annotations or not', () => {
  const asked = { ...pod, metadata: { generateName: 'web-', ownerReferences: [owned], labels: { 'wren.io/inject': 'false' } } };
  const res = mutateWithReason(review(asked));
  expect(res.injected).toBe(false);
  const out = patched(asked);
  expect(out.metadata?.annotations).toEqual({ 'wren.io/inject-warnings': 'wren.io/inject: "false" is neither enabled nor disabled; the pod is not injected' });
  expect(out.spec).toEqual(pod.spec);
  const withAnnotations = { ...asked, metadata: { ...asked.metadata, annotations: { team: 'a' } } };
  expect(patched(withAnnotations).metadata?.annotations).toEqual({ team: 'a', 'wren.io/inject-warnings': expect.stringMatching(/^wren\.io\/inject: "false"/) });
});

test('the warnings annotation is bounded: long warnings cut, the rest counted, and none when the pod\'s annotations are near the API server\'s 256 KiB', () => {
  const long = 'x'.repeat(3000);
  const p = { ...pod, metadata: { annotations: { 'wren.io/skip-inbound-ports': long, 'wren.io/skip-outbound-ports': long, 'wren.io/skip-outbound-cidrs': long, 'wren.io/egress-services': `${long}!`, 'wren.io/proxy-cpu-limit': long, 'wren.io/proxy-memory-limit': long, 'wren.io/proxy-concurrency': long, 'wren.io/proxy-log-level': long, 'wren.io/mesh-http1': long, 'wren.io/mesh-http2': long } } };
  expect(mutate(review(p)).response?.warnings?.length).toBe(10);
  const value = patched(p).metadata!.annotations!['wren.io/inject-warnings'];
  expect(value.length).toBeLessThanOrEqual(4000 + 50);
  const lines = value.split('\n');
  expect(lines.every((l) => l.length <= 500)).toBe(true);
  expect(lines[lines.length - 1]).toMatch(/^\(\d+ more in the control plane's log\)$/);
  const full = { ...pod, metadata: { annotations: { big: 'y'.repeat(255 * 1024), 'wren.io/proxy-cpu-limit': 'fast' } } };
  expect(patched(full).metadata?.annotations?.['wren.io/inject-warnings']).toBeUndefined();
  expect(patched(full).metadata?.annotations?.['wren.io/injected']).toBe('true');
});

test('a pod the injector cannot read is refused with the field path (a 400 from the server), not a TypeError (a 500)', () => {
  expect(() => mutate(review({ ...pod, metadata: { annotations: { 'wren.io/skip-inbound-ports': 8080 } } }))).toThrow(
    new AdmissionError('request.object.metadata.annotations["wren.io/skip-inbound-ports"]: expected a string, got number 8080 (quote it in YAML)'),
  );
  expect(() => mutate(review({ ...pod, spec: { containers: 'app' } }))).toThrow(new AdmissionError('request.object.spec.containers: expected a list'));
  expect(() => mutate(review({ ...pod, spec: { containers: [{ name: 3 }] } }))).toThrow(/request\.object\.spec\.containers\[0\]\.name: expected a string, got number 3/);
});

test('every other field the injector reads is checked too: no TypeError\'s message for a template without containers, a volume map, a probe path that is a number', () => {
  const app = { name: 'app', image: 'a' };
  const probe = (httpGet: unknown) => ({ ...pod, spec: { containers: [{ ...app, readinessProbe: { httpGet } }] } });
  const cases: [unknown, string][] = [
    [{ ...pod, spec: {} }, 'request.object.spec.containers: required (a list with at least the app container)'],
    [{ ...pod, spec: { containers: [app], volumes: { data: {} } } }, 'request.object.spec.volumes: expected a list of objects'],
    [probe({ port: 80, path: 5 }), 'request.object.spec.containers[0].readinessProbe.httpGet.path: expected a string, got number 5'],
    [probe({ port: 80, httpHeaders: 'x-a: b' }), 'request.object.spec.containers[0].readinessProbe.httpGet.httpHeaders: expected a list'],
    [probe({ port: 80, httpHeaders: [{ name: 'x-a', value: 1 }] }), 'request.object.spec.containers[0].readinessProbe.httpGet.httpHeaders[0]: expected {name, value} strings'],
    [{ metadata: { ownerReferences: [null] }, spec: { containers: [app] } }, 'request.object.metadata.ownerReferences: expected a list of objects'],
  ];
  for (const [object, message] of cases) expect(() => mutate(review(object))).toThrow(new AdmissionError(message));
});

test('a pod in kube-system or wren-system is not injected even if a webhook configuration sends it (request.namespace, as the pod\'s own is often empty)', () => {
  for (const namespace of ['kube-system', 'wren-system']) {
    const out = mutateWithReason(review(pod, { namespace }));
    expect([out.injected, out.reason, out.review.response]).toEqual([false, `pods in ${namespace} are never injected`, { uid: 'u-1', allowed: true }]);
  }
  expect(mutateWithReason(review(pod, { namespace: 'demo' })).injected).toBe(true);
});

test('rejects what is not an AdmissionReview v1', () => {
  expect(() => mutate({ kind: 'Pod' })).toThrow(AdmissionError);
  expect(() => mutate({ ...review(pod), apiVersion: 'admission.k8s.io/v1beta1' })).toThrow(/only admission.k8s.io\/v1/);
});
