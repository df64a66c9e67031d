import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { parseServices } from '../../contract/parse.js';
import type { Service } from '../../contract/model.js';
import {
  ConfigError, arr, duration, literal, num, obj, optional, parseWith, port, str, type Parser,
} from '../../common/schema.js';

/**
 * The proxy's own configuration (bootstrap): identity, certificate files, listeners,
 * protocol handling and either a static mesh or a control-plane address. Parsed once
 * here; the rest of the proxy only sees the readonly result.
 */
export interface ListenerAddress {
  readonly address: string;
  readonly port: number;
}

export interface ProxyConfig {
  readonly identity: { readonly trustDomain: string; readonly namespace: string; readonly serviceAccount: string; readonly pod: string };
  readonly tls: { readonly certFile: string; readonly keyFile: string; readonly trustBundleFile: string };
  readonly listeners: { readonly outbound: ListenerAddress; readonly inbound: ListenerAddress; readonly admin: ListenerAddress };
  /** Where inbound traffic is delivered: the app in the same pod. */
  readonly app: { readonly address: string };
  readonly protocol: {
    readonly detectTimeoutMs: number;
    /** Server-speaks-first ports: never wait for the client's first bytes. */
    readonly opaquePorts: readonly number[];
  };
  readonly limits: { readonly maxHeaderBytes: number; readonly maxConcurrentStreams: number };
  readonly shutdown: { readonly gracePeriodMs: number };
  readonly log: { readonly level: 'debug' | 'info' | 'warn' | 'error' };
  readonly discovery: { readonly controlPlane: string | undefined; readonly firstConfigTimeoutMs: number };
  /** Static mesh; the control plane, when configured, replaces it. */
  readonly mesh: { readonly services: readonly Service[] };
}

const listener = (address: string, p: number): Parser<ListenerAddress> =>
  obj({ address: str({ default: address }), port: port(p) });

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Linkerd's default opaque (server-speaks-first) ports: SMTP, MySQL, Galera, Postgres, ES, Redis, memcached. */
export const DEFAULT_OPAQUE_PORTS = [25, 587, 3306, 4444, 5432, 6379, 9300, 11211];

const parser: Parser<ProxyConfig> = obj({
  identity: obj({
    trustDomain: str({ default: 'cluster.local', pattern: /^[a-z0-9.-]+$/ }),
    namespace: str({ default: 'default', pattern: DNS_LABEL }),
    serviceAccount: str({ default: 'default', pattern: /^[a-z0-9.-]+$/ }),
    pod: str({ default: '' }),
  }),
  tls: obj({ certFile: str(), keyFile: str(), trustBundleFile: str() }),
  listeners: obj({
    outbound: listener('127.0.0.1', 15001),
    inbound: listener('0.0.0.0', 15006),
    admin: listener('127.0.0.1', 15000),
  }),
  app: obj({ address: str({ default: '127.0.0.1' }) }),
  protocol: obj({
    detectTimeoutMs: duration(1000),
    opaquePorts: arr(num({ int: true, min: 1, max: 65535 }), { default: DEFAULT_OPAQUE_PORTS }),
  }),
  limits: obj({
    maxHeaderBytes: num({ int: true, min: 1024, max: 1 << 20, default: 16 * 1024 }),
    maxConcurrentStreams: num({ int: true, min: 1, default: 1000 }),
  }),
  shutdown: obj({ gracePeriodMs: duration(30_000) }),
  log: obj({ level: literal(['debug', 'info', 'warn', 'error'] as const, 'info') }),
  discovery: obj({
    controlPlane: optional(str({ pattern: /^[^\s:]+:\d+$/ })),
    firstConfigTimeoutMs: duration(30_000),
  }),
  mesh: obj({ services: parseServices }),
}) as Parser<ProxyConfig>;

export function parseProxyConfig(raw: unknown, source = 'config'): ProxyConfig {
  return parseWith(parser, raw, source);
}

/** Reads and parses a YAML (or JSON) file; errors name the file and the field path. */
export function loadProxyConfig(file: string): ProxyConfig {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError('', `cannot read config: ${(e as Error).message}`, file);
  }
  return parseProxyConfig(raw, file);
}

