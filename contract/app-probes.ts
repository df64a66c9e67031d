import { arr, fail, literal, num, obj, optional, str, type Parser } from '../common/schema.js';

/**
 * Kubelet probes rewritten to the sidecar (Istio's ISTIO_KUBE_APP_PROBERS, pilot-agent's
 * status server on 15020): the injector points each httpGet, tcpSocket and grpc probe of
 * an app container at `GET /app-health/<container>/<livez|readyz|startupz>` on the
 * sidecar's metrics port and hands the original probes to the proxy in WREN_APP_PROBES, a
 * JSON object keyed by that path. The proxy runs the original probe against the app and
 * answers with the result, so kubelet never needs the app port to bypass the sidecar.
 * This module is the contract between the two: the wire shape the injector writes and the
 * parser the proxy reads it with (once, at start-up; errors name the field path).
 */
export const APP_PROBES_ENV = 'WREN_APP_PROBES';

export type AppProbeKind = 'livez' | 'readyz' | 'startupz';

/** A container name is an RFC 1123 DNS label (Kubernetes validation), so it needs no escaping in the path. */
const CONTAINER = '[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?';
const PROBE_PATH = new RegExp(`^/app-health/${CONTAINER}/(livez|readyz|startupz)$`);

/** `/app-health/web/readyz`: the path kubelet's rewritten probe asks the sidecar for. */
export const appProbePath = (container: string, kind: AppProbeKind): string => `/app-health/${container}/${kind}`;

/** What the injector writes for one probe (Kubernetes' spelling: timeoutSeconds, httpHeaders, scheme). */
export type AppProbeSpec =
  | {
      readonly kind: 'http';
      readonly port: number;
      readonly path: string;
      readonly scheme: 'HTTP' | 'HTTPS';
      readonly httpHeaders?: readonly { readonly name: string; readonly value: string }[];
      readonly timeoutSeconds: number;
    }
  | { readonly kind: 'tcp'; readonly port: number; readonly timeoutSeconds: number }
  | { readonly kind: 'grpc'; readonly port: number; readonly service?: string; readonly timeoutSeconds: number };

/** One probe as the proxy runs it. */
export type AppProbe =
  | {
      readonly kind: 'http';
      readonly port: number;
      /** Origin-form request target (path and query), visible ASCII only. */
      readonly path: string;
      readonly scheme: 'HTTP' | 'HTTPS';
      readonly headers: readonly { readonly name: string; readonly value: string }[];
      readonly timeoutMs: number;
    }
  | { readonly kind: 'tcp'; readonly port: number; readonly timeoutMs: number }
  | { readonly kind: 'grpc'; readonly port: number; readonly service: string; readonly timeoutMs: number };

/** Path → probe; only paths of the PROBE_PATH form. */
export type AppProbes = ReadonlyMap<string, AppProbe>;

export const NO_APP_PROBES: AppProbes = new Map();

/**
 * A request target Node sends as is: `/` then visible ASCII (the injector percent-encodes
 * the rest, as kubelet's Go url does). No space or control character can split the request line.
 */
const PROBE_TARGET = /^\/[\x21-\x7e]*$/;
/** RFC 9110 field-name token. */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9110 field-value: visible characters, space and tab; no CR, LF or NUL (Node refuses them too). */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * A probe header's value, refused without quoting it: it may be a credential (an
 * `Authorization`; /config_dump shows probe header values redacted), and the refusal is
 * printed by `wren proxy` at start, into the pod's log.
 */
const headerValue: Parser<string> = (raw, path) => {
  const v = str()(raw, path);
  const bad = v.search(/[^\t\x20-\x7e\x80-\xff]/);
  return bad < 0 ? v : fail(path, `expected to match ${HEADER_VALUE}, got a value (not shown: it may be a credential) with ${JSON.stringify(v[bad])} at character ${bad}`);
};

const port = num({ int: true, min: 1, max: 65535 });
/** kubelet's default and minimum are 1 s; a day is far beyond any probe period. */
const timeoutSeconds = num({ int: true, min: 1, max: 86_400, default: 1 });

const http = obj({
  kind: literal(['http'] as const),
  port,
  path: str({ default: '/', pattern: PROBE_TARGET }),
  scheme: literal(['HTTP', 'HTTPS'] as const, 'HTTP'),
  httpHeaders: arr(obj({ name: str({ pattern: HEADER_NAME }), value: headerValue }), { default: [] }),
  timeoutSeconds,
});
const tcp = obj({ kind: literal(['tcp'] as const), port, timeoutSeconds });
const grpc = obj({ kind: literal(['grpc'] as const), port, service: optional(str()), timeoutSeconds });

/** One probe spec → the proxy's form; `kind` picks the shape, unknown fields are errors. */
export const parseAppProbe: Parser<AppProbe> = (raw, path) => {
  const kind = (raw as { kind?: unknown } | null)?.kind;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail(path, `expected an object, got ${JSON.stringify(raw)}`);
  if (kind === 'http') {
    const h = http(raw, path);
    return Object.freeze({ kind: 'http', port: h.port, path: h.path, scheme: h.scheme, headers: h.httpHeaders, timeoutMs: h.timeoutSeconds * 1000 });
  }
  if (kind === 'tcp') {
    const t = tcp(raw, path);
    return Object.freeze({ kind: 'tcp', port: t.port, timeoutMs: t.timeoutSeconds * 1000 });
  }
  if (kind === 'grpc') {
    const g = grpc(raw, path);
    return Object.freeze({ kind: 'grpc', port: g.port, service: g.service ?? '', timeoutMs: g.timeoutSeconds * 1000 });
  }
  return fail(`${path}.kind`, `expected one of http, tcp, grpc, got ${JSON.stringify(kind)}`);
};

/**
 * The whole WREN_APP_PROBES object (as JSON-parsed). Keys are `/app-health/<container>/<kind>`
 * (Istio validates its keys with the same pattern); an error's path names the key:
 * `appProbes["/app-health/web/readyz"].port: expected an integer ...`.
 */
export const parseAppProbes: Parser<AppProbes> = (raw, path) => {
  if (raw === undefined || raw === null) return NO_APP_PROBES;
  if (typeof raw !== 'object' || Array.isArray(raw)) return fail(path, `expected an object keyed by /app-health/<container>/<livez|readyz|startupz>, got ${JSON.stringify(raw).slice(0, 60)}`);
  const out = new Map<string, AppProbe>();
  for (const [key, value] of Object.entries(raw)) {
    const at = `${path}[${JSON.stringify(key)}]`;
    if (!PROBE_PATH.test(key)) fail(at, 'expected a key of the form /app-health/<container>/<livez|readyz|startupz>');
    out.set(key, parseAppProbe(value, at));
  }
  return out;
};
