import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

/**
 * What `wren check` compares the cluster with, read from the manifests shipped with this
 * release (manifests/crds, manifests/install) so the checks cannot drift from what
 * `kubectl apply -k manifests` installs.
 */
export interface ExpectedCrd {
  readonly name: string;
  readonly group: string;
  /** Served versions, in manifest order. */
  readonly versions: readonly string[];
  readonly storage: string;
}

/** The directory holding manifests/ (the package root, from cli/check or dist/cli/check). */
export function manifestsDir(): string {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'manifests', 'crds'))) return join(dir, 'manifests');
    dir = join(dir, '..');
  }
  throw new Error('manifests/crds not found next to the wren package');
}

function docsOf(file: string): Record<string, unknown>[] {
  return parseAllDocuments(readFileSync(file, 'utf8'))
    .map((d) => d.toJS() as unknown)
    .filter((v): v is Record<string, unknown> => !!v && typeof v === 'object');
}

const yamlFiles = (dir: string): string[] => readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => join(dir, f));

export function expectedCrds(manifests = manifestsDir()): ExpectedCrd[] {
  return yamlFiles(join(manifests, 'crds'))
    .flatMap(docsOf)
    .filter((d) => d.kind === 'CustomResourceDefinition')
    .map((d) => {
      const spec = d.spec as { group: string; versions: { name: string; served: boolean; storage: boolean }[] };
      return {
        name: (d.metadata as { name: string }).name,
        group: spec.group,
        versions: spec.versions.filter((v) => v.served).map((v) => v.name),
        storage: spec.versions.find((v) => v.storage)?.name ?? '',
      };
    });
}

/** (apiGroup, resource, namespace) of every object the install creates, plus its Secrets and CRDs. */
export interface InstallPermission {
  readonly group: string;
  readonly resource: string;
  readonly namespace: string | null;
}

const RESOURCES: Record<string, [group: string, resource: string, namespaced: boolean]> = {
  Namespace: ['', 'namespaces', false],
  ServiceAccount: ['', 'serviceaccounts', true],
  ConfigMap: ['', 'configmaps', true],
  Secret: ['', 'secrets', true],
  Service: ['', 'services', true],
  Deployment: ['apps', 'deployments', true],
  PodDisruptionBudget: ['policy', 'poddisruptionbudgets', true],
  ClusterRole: ['rbac.authorization.k8s.io', 'clusterroles', false],
  ClusterRoleBinding: ['rbac.authorization.k8s.io', 'clusterrolebindings', false],
  Role: ['rbac.authorization.k8s.io', 'roles', true],
  RoleBinding: ['rbac.authorization.k8s.io', 'rolebindings', true],
  MutatingWebhookConfiguration: ['admissionregistration.k8s.io', 'mutatingwebhookconfigurations', false],
  CustomResourceDefinition: ['apiextensions.k8s.io', 'customresourcedefinitions', false],
};

export function installPermissions(manifests = manifestsDir()): InstallPermission[] {
  const kinds = [...yamlFiles(join(manifests, 'install')), ...yamlFiles(join(manifests, 'crds'))].flatMap(docsOf).map((d) => ({
    kind: String(d.kind), namespace: ((d.metadata as { namespace?: string } | undefined)?.namespace) ?? null,
  }));
  // The issuer and webhook Secrets are created at install time (docs/kubernetes.md), not shipped.
  kinds.push({ kind: 'Secret', namespace: 'wren-system' });
  const seen = new Map<string, InstallPermission>();
  for (const k of kinds) {
    const r = RESOURCES[k.kind];
    if (!r) throw new Error(`manifests: kind ${k.kind} has no known resource (add it to cli/check/expected.ts)`);
    const p = { group: r[0], resource: r[1], namespace: r[2] ? (k.namespace ?? 'wren-system') : null };
    seen.set(`${p.group}/${p.resource}/${p.namespace}`, p);
  }
  return [...seen.values()];
}
