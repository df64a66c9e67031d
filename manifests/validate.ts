import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parseAllDocuments } from 'yaml';
import { ConfigError, type Parser } from '../common/schema.js';
import { parseGrpcRoute, parseHttpRoute, parseReferenceGrant } from '../control-plane/translate/route-objects.js';

/**
 * Validates Wren resources (TrafficPolicy, PeerAuthentication, AuthorizationPolicy, RequestAuthentication,
 * MeshService, Telemetry) against the OpenAPI v3 schemas in manifests/crds, offline, the way the
 * API server would: the CRD YAML is the single source of truth, translated here from
 * Kubernetes' OpenAPI subset to JSON Schema for ajv:
 * - `nullable: true` admits null;
 * - `x-kubernetes-int-or-string: true` is integer | string (pattern applies to strings,
 *   minimum to integers, as in JSON Schema);
 * - an object with `properties` and no `x-kubernetes-preserve-unknown-fields` rejects
 *   unknown fields (the API server prunes them, and `kubectl apply --validate=strict`,
 *   the default since 1.25, reports them as errors);
 * - `x-kubernetes-list-type: set` means unique items, `map` unique `list-map-keys`;
 * - `x-kubernetes-validations` (CEL) rules are recognised from a small table of the
 *   rules our CRDs use; an unknown rule is a load error, never silently ignored.
 * - the Gateway API CRDs (HTTPRoute, GRPCRoute, ReferenceGrant, copied unchanged from upstream)
 *   carry many CEL rules; rather than a table entry each, their rules are checked by the
 *   control plane's own parsers (control-plane/translate/route-objects.ts implements them,
 *   and is what the directory source applies), run after the schema.
 * Error paths are in the repo's dotted form: `spec.policy.retry.attempts`, `spec.ports[1].port`.
 */
export type ValidationResult = { ok: true } | { ok: false; errors: { path: string; message: string }[] };

type Json = Record<string, unknown>;

export interface CrdSchema {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly plural: string;
  /** The openAPIV3Schema exactly as written in the CRD. */
  readonly openApi: Json;
  readonly validate: ValidateFunction;
  /** The CRD's CEL rules, when a parser checks them instead of KNOWN_CEL (Gateway API kinds). */
  readonly cel?: Parser<unknown>;
}

const GATEWAY_GROUP = 'gateway.networking.k8s.io';
const CEL_PARSERS: Record<string, Parser<unknown>> = { HTTPRoute: parseHttpRoute, GRPCRoute: parseGrpcRoute, ReferenceGrant: parseReferenceGrant };

export interface CrdSchemas {
  readonly crds: readonly CrdSchema[];
  find(apiVersion: string, kind: string): CrdSchema | undefined;
}

/** The CEL rule "one of these lists is non-empty, or one of these fields is set", as the CRDs write it. */
function nonEmptyRule(lists: readonly string[], fields: readonly string[] = []): string {
  return [...lists.map((l) => `(has(self.${l}) && size(self.${l}) > 0)`), ...fields.map((f) => `has(self.${f})`)].join(' || ');
}
const nonEmptySchema = (lists: readonly string[], fields: readonly string[] = []): Json => ({
  anyOf: [...lists.map((l) => ({ required: [l], properties: { [l]: { minItems: 1 } } })), ...fields.map((f) => ({ required: [f] }))],
});

/** CEL rules our CRDs use, with their JSON Schema equivalent. */
const PORT_KEY = '^([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$';
const KNOWN_CEL: Record<string, Json> = {
  "self.all(k, k.matches('^[0-9]+$') && int(k) >= 1 && int(k) <= 65535)": { propertyNames: { pattern: PORT_KEY } },
  // PeerAuthentication spec: port-level modes need a workload selector.
  '!has(self.portLevelMtls) || size(self.portLevelMtls) == 0 || (has(self.selector) && has(self.selector.matchLabels) && size(self.selector.matchLabels) > 0)': {
    if: { required: ['portLevelMtls'], properties: { portLevelMtls: { minProperties: 1 } } },
    then: { required: ['selector'], properties: { selector: { required: ['matchLabels'], properties: { matchLabels: { minProperties: 1 } } } } },
  },
  // AuthorizationPolicy spec: a DENY policy has rules.
  "!has(self.action) || self.action != 'DENY' || (has(self.rules) && size(self.rules) > 0)": {
    if: { required: ['action'], properties: { action: { const: 'DENY' } } },
    then: { required: ['rules'], properties: { rules: { minItems: 1 } } },
  },
  // AuthorizationPolicy source / operation: at least one non-empty restriction.
  [nonEmptyRule(['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'requestPrincipals', 'notRequestPrincipals'], ['unauthenticated'])]: nonEmptySchema(
    ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'requestPrincipals', 'notRequestPrincipals'],
    ['unauthenticated'],
  ),
  [nonEmptyRule(['ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'])]: nonEmptySchema(['ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths']),
  // AuthorizationPolicy condition: at least one of values / notValues.
  '(has(self.values) && size(self.values) > 0) || (has(self.notValues) && size(self.notValues) > 0)': {
    if: { not: { required: ['notValues'], properties: { notValues: { minItems: 1 } } } },
    then: { required: ['values'], properties: { values: { minItems: 1 } } },
  },
  // TrafficPolicy healthCheck: an http probe's path is origin-form.
  "self.kind != 'http' || !has(self.path) || self.path.startsWith('/')": {
    if: { required: ['kind'], properties: { kind: { const: 'http' } } },
    then: { properties: { path: { pattern: '^/' } } },
  },
  // TrafficPolicy loadBalancer: minRingSize <= maxRingSize, either defaulted (Envoy refuses
  // minimum_ring_size > maximum_ring_size); the defaults are contract/defaults.ts's.
  '(has(self.minRingSize) ? self.minRingSize : 1024) <= (has(self.maxRingSize) ? self.maxRingSize : 8388608)': {
    ringSizesInOrder: { min: 1024, max: 8388608 },
  },
  // RequestAuthentication jwtRule: exactly one key source.
  '[has(self.jwks), has(self.jwksUri), has(self.jwksFile)].filter(x, x).size() == 1': {
    oneOf: [{ required: ['jwks'] }, { required: ['jwksUri'] }, { required: ['jwksFile'] }],
  },
};

function defaultCrdDir(): string {
  // Source (manifests/validate.ts) and compiled (dist/manifests/validate.js) layouts.
  const here = fileURLToPath(new URL('.', import.meta.url));
  for (const d of [join(here, 'crds'), join(here, '..', '..', 'manifests', 'crds')]) if (existsSync(d)) return d;
  throw new Error(`cannot find manifests/crds next to ${here}`);
}

/** A junctor branch's schema without the `additionalProperties: false` toJsonSchema gives every node with properties. */
function withoutClosedObject(schema: Json): Json {
  const { additionalProperties: _closed, ...rest } = schema;
  return rest;
}

/** Translate one Kubernetes structural schema node to JSON Schema (draft-07). */
export function toJsonSchema(node: Json, path = '', celChecked = false): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === 'properties') {
      const props: Json = {};
      for (const [name, sub] of Object.entries(v as Json)) props[name] = toJsonSchema(sub as Json, `${path}.${name}`, celChecked);
      out.properties = props;
    } else if (k === 'items' || (k === 'additionalProperties' && typeof v === 'object')) {
      out[k] = toJsonSchema(v as Json, `${path}[]`, celChecked);
    } else if (k === 'anyOf' || k === 'allOf' || k === 'oneOf') {
      // A branch only adds value validations to fields declared beside it (a structural schema's rule): never "no other fields".
      out[k] = [...((out[k] as Json[] | undefined) ?? []), ...(v as Json[]).map((s) => withoutClosedObject(toJsonSchema(s, path, celChecked)))];
    } else if (k === 'x-kubernetes-validations' && celChecked) {
      continue;
    } else if (k === 'x-kubernetes-validations') {
      for (const { rule } of v as { rule: string }[]) {
        const eq = KNOWN_CEL[rule];
        if (!eq) throw new Error(`${path || '<root>'}: no offline equivalent for CEL rule ${rule}`);
        // Each rule its own allOf member: two rules on one node (or a rule beside the node's own anyOf) must not overwrite each other.
        out.allOf = [...((out.allOf as Json[] | undefined) ?? []), eq];
      }
    } else if (k === 'x-kubernetes-list-type' && v === 'set') {
      out.uniqueItems = true;
    } else if (k === 'x-kubernetes-list-type' && v === 'map') {
      out.uniqueKeys = node['x-kubernetes-list-map-keys'];
    } else if (k.startsWith('x-kubernetes-') || k === 'nullable') {
      continue;
    } else {
      out[k] = v;
    }
  }
  // OpenAPI v3.0 (Kubernetes) writes an exclusive bound as a boolean beside minimum/maximum; draft-07 as the bound itself.
  if (out.exclusiveMinimum === true) [out.exclusiveMinimum, out.minimum] = [out.minimum, undefined];
  if (out.exclusiveMaximum === true) [out.exclusiveMaximum, out.maximum] = [out.maximum, undefined];
  if (node['x-kubernetes-int-or-string'] === true && !out.anyOf) out.anyOf = [{ type: 'integer' }, { type: 'string' }];
  if (node.nullable === true) {
    if (typeof out.type === 'string') out.type = [out.type, 'null'];
    else if (Array.isArray(out.anyOf)) out.anyOf = [...out.anyOf, { type: 'null' }];
  }
  if (out.properties && node['x-kubernetes-preserve-unknown-fields'] !== true && out.additionalProperties === undefined) {
    out.additionalProperties = false;
  }
  return out;
}

function newAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, strict: false, verbose: true });
  // OpenAPI formats the Gateway API CRDs use: int32/int64 are already bounded by their
  // minimum/maximum, date-time only appears in status (which the API server fills).
  ajv.addFormat('int32', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
  ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isInteger(n) });
  ajv.addFormat('date-time', (s: string) => !Number.isNaN(Date.parse(s)));
  // x-kubernetes-list-type: map — items must be unique by their list-map-keys.
  ajv.addKeyword({
    keyword: 'uniqueKeys',
    type: 'array',
    errors: true,
    validate: function uniqueKeys(keys: string[], data: unknown[], _parent?: unknown, cxt?: { instancePath: string }) {
      const seen = new Map<string, number>();
      const self = uniqueKeys as unknown as { errors: Partial<ErrorObject>[] };
      self.errors = [];
      data.forEach((item, i) => {
        if (typeof item !== 'object' || item === null) return;
        const id = JSON.stringify(keys.map((k) => (item as Json)[k]));
        const first = seen.get(id);
        if (first !== undefined)
          self.errors.push({ keyword: 'uniqueKeys', instancePath: `${cxt?.instancePath ?? ''}/${i}/${keys[0]}`, message: `duplicate ${keys.join('/')} ${keys.map((k) => JSON.stringify((item as Json)[k])).join('/')} (also at [${first}])`, params: {} });
        else seen.set(id, i);
      });
      return self.errors.length === 0;
    },
  });
  // The TrafficPolicy loadBalancer rule above (CEL compares two fields; JSON Schema cannot).
  ajv.addKeyword({
    keyword: 'ringSizesInOrder',
    type: 'object',
    errors: true,
    validate: function ringSizesInOrder(defaults: { min: number; max: number }, data: Json, _parent?: unknown, cxt?: { instancePath: string }) {
      const self = ringSizesInOrder as unknown as { errors: Partial<ErrorObject>[] };
      const min = typeof data.minRingSize === 'number' ? data.minRingSize : defaults.min;
      const max = typeof data.maxRingSize === 'number' ? data.maxRingSize : defaults.max;
      self.errors = min <= max ? [] : [{ keyword: 'ringSizesInOrder', instancePath: `${cxt?.instancePath ?? ''}/minRingSize`, message: `must not exceed maxRingSize (${max}), got ${min}`, params: {} }];
      return self.errors.length === 0;
    },
  });
  return ajv;
}

/** Load and compile every CRD under `dir` (default: manifests/crds). */
export function loadCrdSchemas(dir: string = defaultCrdDir()): CrdSchemas {
  const ajv = newAjv();
  const crds: CrdSchema[] = [];
  for (const file of readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort()) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, file), 'utf8'))) {
      const crd = doc.toJS() as Json | null;
      if (!crd || crd.kind !== 'CustomResourceDefinition') continue;
      const spec = crd.spec as { group: string; names: { kind: string; plural: string }; versions: Json[] };
      for (const v of spec.versions) {
        const openApi = (v.schema as Json).openAPIV3Schema as Json;
        const cel = spec.group === GATEWAY_GROUP ? CEL_PARSERS[spec.names.kind] : undefined;
        if (spec.group === GATEWAY_GROUP && !cel) throw new Error(`${file}: no parser checks the CEL rules of ${spec.names.kind}`);
        crds.push({
          ...(cel ? { cel } : {}),
          group: spec.group,
          version: v.name as string,
          kind: spec.names.kind,
          plural: spec.names.plural,
          openApi,
          validate: ajv.compile(toJsonSchema(openApi, '', cel !== undefined)),
        });
      }
    }
  }
  return {
    crds,
    find: (apiVersion, kind) => crds.find((c) => `${c.group}/${c.version}` === apiVersion && c.kind === kind),
  };
}

/** JSON pointer -> `a.b[0].c`, walking the data: list items get brackets, map keys (even numeric, like portLevelMtls ports) dots. */
function toDotted(pointer: string, data: unknown): string {
  let out = '';
  let at: unknown = data;
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out = Array.isArray(at) ? `${out}[${seg}]` : out ? `${out}.${seg}` : seg;
    at = at !== null && typeof at === 'object' ? (at as Record<string, unknown>)[seg] : undefined;
  }
  return out;
}

const join2 = (base: string, key: string): string => (base ? `${base}.${key}` : key);

function explain(errors: ErrorObject[], data: unknown): { path: string; message: string }[] {
  // An int-or-string anyOf reports one type error per branch plus the anyOf itself: keep one.
  const anyOfAt = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  const out: { path: string; message: string }[] = [];
  for (const e of errors) {
    let path = toDotted(e.instancePath, data);
    let message = e.message ?? 'is invalid';
    if (e.keyword === 'type' && anyOfAt.has(e.instancePath) && /\/anyOf\/\d+\/type$/.test(e.schemaPath)) continue;
    if (e.keyword === 'anyOf') {
      const branches = e.schema as Json[];
      // Branches that constrain fields (an AuthorizationPolicy condition's destination.port values): their own errors name the field.
      if (branches.some((b) => b.properties) && !branches.every((b) => b.required)) continue;
      message = branches.every((b) => b.required)
        ? `needs one of ${branches.map((b) => (b.required as string[]).join('+')).join(', ')}`
        : 'must be integer milliseconds or a duration string like "250ms", "1s", "5m"';
    }
    // A branch's "must NOT be valid" (the condition key is destination.port) says nothing the sibling branch's error does not.
    if (e.keyword === 'not' && /\/anyOf\/\d+\//.test(e.schemaPath)) continue;
    if (e.keyword === 'not') message = `is not allowed${(e.parentSchema as Json | undefined)?.description ? ` (${String((e.parentSchema as Json).description)})` : ''}`;
    if (e.keyword === 'pattern' && (e.parentSchema as Json | undefined)?.pattern === PORT_KEY) message = 'must be a port number 1-65535 (digits, no match forms)';
    if (e.keyword === 'oneOf') message = `needs exactly one of ${(e.schema as Json[]).map((b) => (b.required as string[] | undefined)?.join('+') ?? '?').join(', ')}`;
    if (e.keyword === 'required' && /\/(anyOf|oneOf)\/\d+\/required$/.test(e.schemaPath)) continue;
    if (e.keyword === 'required') {
      path = join2(path, (e.params as { missingProperty: string }).missingProperty);
      message = 'is required';
    }
    if (e.keyword === 'additionalProperties') {
      path = join2(path, (e.params as { additionalProperty: string }).additionalProperty);
      message = 'unknown field';
    }
    if (e.keyword === 'propertyNames') {
      path = join2(path, (e.params as { propertyName: string }).propertyName);
      message = 'is not a port number 1-65535';
    }
    if (e.keyword === 'enum') message = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`;
    if (e.keyword === 'pattern' && /duration/.test(e.parentSchema?.description ?? ''))
      message = `must be a duration${/greater than 0/.test(e.parentSchema?.description ?? '') ? ' greater than 0' : ''} like "250ms", "1s", "5m", "1h"`;
    if (e.keyword === 'if' || (e.keyword === 'pattern' && e.schemaPath.includes('propertyNames'))) continue;
    if (!out.some((o) => o.path === path && o.message === message)) out.push({ path, message });
  }
  return out;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
let cached: CrdSchemas | undefined;

/** Validate one parsed resource (YAML/JSON object) against its Wren CRD schema. */
export function validateResource(obj: unknown, schemas?: CrdSchemas): ValidationResult {
  const s = schemas ?? (cached ??= loadCrdSchemas());
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return { ok: false, errors: [{ path: '', message: 'must be an object' }] };
  const r = obj as Json;
  const crd = s.find(String(r.apiVersion), String(r.kind));
  if (!crd) return { ok: false, errors: [{ path: 'kind', message: `no Wren CRD for apiVersion ${String(r.apiVersion)}, kind ${String(r.kind)}` }] };
  const errors: { path: string; message: string }[] = [];
  const meta = r.metadata as Json | undefined;
  if (typeof meta?.name !== 'string' || !DNS_SUBDOMAIN.test(meta.name) || meta.name.length > 253)
    errors.push({ path: 'metadata.name', message: 'is required and must be a DNS-1123 subdomain' });
  if (!crd.validate(obj)) errors.push(...explain(crd.validate.errors ?? [], obj));
  else if (crd.cel)
    try {
      crd.cel(obj, '');
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      errors.push({ path: e.path, message: e.problem });
    }
  return errors.length === 0 ? { ok: true } : { ok: false, errors };
}
