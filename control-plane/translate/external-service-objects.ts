import { externalServiceSpec, type ExternalService } from '../../contract/egress.js';
import { literal, obj, optional, str, type Parser } from '../../common/schema.js';
import { TRAFFIC_POLICY_GROUP, TRAFFIC_POLICY_VERSION } from './k8s-objects.js';
import { metadata } from './policy-objects.js';

/**
 * The ExternalService resource (manifests/crds/externalservice.yaml): Istio's ServiceEntry
 * with `location: MESH_EXTERNAL`, `resolution: NONE`, for the fields Wren implements
 * (contract/egress.ts). Validated here with field paths (`spec.ports[0].tls.port: ...`);
 * a source keeps the last good version of a resource that fails. Istio's `exportTo`,
 * `workloadSelector`, `endpoints`, `resolution: DNS` and `location: MESH_INTERNAL` are not
 * accepted (unknown fields are errors): every ExternalService applies mesh-wide.
 */
const resource = obj(
  { apiVersion: optional(literal([`${TRAFFIC_POLICY_GROUP}/${TRAFFIC_POLICY_VERSION}`] as const)), kind: optional(str()), metadata, spec: externalServiceSpec },
  { allowUnknown: true },
);

export const parseExternalServiceResource: Parser<ExternalService> = (raw, path) => {
  const o = resource(raw, path);
  return Object.freeze({ name: `${o.metadata.namespace}/${o.metadata.name}`, hosts: o.spec.hosts, addresses: o.spec.addresses, ports: o.spec.ports });
};
