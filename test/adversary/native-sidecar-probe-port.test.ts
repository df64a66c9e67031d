import type { V1Pod } from '@kubernetes/client-node';
import { injectPod } from '../../control-plane/injector/inject-pod.js';

/**
 * ADVERSARY: native-sidecar-probe-port
 *
 * What a user does: runs a pod that has its own native sidecar (Kubernetes >= 1.29: an init
 * container with `restartPolicy: Always`, e.g. a log shipper or a cloud-sql-proxy) with a
 * readiness/liveness/startup probe on its port, as the Kubernetes docs show for sidecars.
 *
 * What happens: probePorts (control-plane/injector/inject-pod.ts) collects probe ports from
 * `spec.containers` only, so that port is not passed to wren-init's --skip-inbound-ports.
 * kubelet's probe (from the node, to the pod IP) is redirected to the proxy's inbound
 * port, which demands mTLS kubelet does not speak: the probe fails, the sidecar is never
 * Ready (for a startupProbe the pod never starts its app containers; for a liveness probe
 * kubelet restarts it in a loop).
 *
 * What should happen: docs/kubernetes.md "Health probes": the injector leaves "the port of
 * every httpGet, tcpSocket and grpc probe on an app container" out of redirection; a
 * restartable init container is one of the pod's long-running containers and kubelet
 * probes it the same way (KEP-753 sidecar containers), so its probe ports must be skipped
 * too.
 */
test('the probe port of an app-owned native sidecar is left out of inbound redirection', () => {
  const pod: V1Pod = {
    metadata: { name: 'web-0', namespace: 'shop' },
    spec: {
      initContainers: [
        {
          name: 'log-shipper',
          image: 'shipper:1',
          restartPolicy: 'Always',
          ports: [{ name: 'shipper-http', containerPort: 9000 }],
          readinessProbe: { httpGet: { path: '/ready', port: 'shipper-http' } },
          startupProbe: { tcpSocket: { port: 9001 } },
        },
      ],
      containers: [{ name: 'app', image: 'web:1', readinessProbe: { httpGet: { path: '/healthz', port: 8080 } } }],
    },
  };
  const res = injectPod(pod, { namespaceLabels: { 'wren.io/inject': 'enabled' } });
  expect(res.injected).toBe(true);
  const init = res.patch.flatMap((op) => (Array.isArray(op.value) ? op.value : [op.value])).find((c) => (c as { name?: string })?.name === 'wren-init') as { args: string[] };
  const i = init.args.indexOf('--skip-inbound-ports');
  const skipped = i < 0 ? [] : init.args[i + 1].split(',');
  expect(skipped).toEqual(expect.arrayContaining(['8080', '9000', '9001']));
});
