import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import type * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';

// grpc-js and proto-loader load on first use: the proxy imports this module for names
// (controlPlaneSpiffeId) even when it never talks to a control plane.
const require = createRequire(import.meta.url);

/**
 * The identity contract (contract/identity.proto, package wren.identity.v1): types and
 * a loader, shared by the control plane (server) and the proxy (client), which never
 * import each other. Loaded like discovery.proto: `keepCase: false` (so `csr_pem` is
 * `csrPem` here), `longs: Number`, `defaults: true`.
 */
export interface CertifyRequest {
  /** spiffe://<td>/ns/<ns>/sa/<sa> */
  identity: string;
  /** A service-account or bootstrap token. Never log it. */
  token: Buffer;
  csrPem: string;
  /** 0 = the control plane's default lifetime. */
  requestedLifetimeMs: number;
}

export interface CertifyResponse {
  /** Leaf first, then intermediates up to (excluding) the root. */
  certChainPem: string;
  /** One or more roots. */
  trustBundlePem: string;
  /** Leaf notAfter, ms since the epoch. */
  validUntilMs: number;
}

/** The token audience the control plane asks TokenReview to check (the injector's projected token). */
export const IDENTITY_TOKEN_AUDIENCE = 'wren-identity';

/**
 * The control plane's debug pages, /api/ and dashboard answer a non-loopback client only
 * with a ServiceAccount token of its namespace for this audience, in this header (the
 * API server's pod proxy strips `Authorization`); control-plane/admin-access.ts.
 */
export const ADMIN_TOKEN_AUDIENCE = 'wren-admin';
export const ADMIN_TOKEN_HEADER = 'x-wren-admin-token';
/** The control plane's own service account: its serving certificate is issued to this SPIFFE ID. */
export const CONTROL_PLANE_SERVICE_ACCOUNT = 'wren-control-plane';
export const DEFAULT_CONTROL_PLANE_NAMESPACE = 'wren-system';

/**
 * A trust domain as the proxy (identity.trustDomain, WREN_TRUST_DOMAIN), the control plane
 * (--trust-domain) and `wren inject` (--trust-domain) all accept it: lowercase letters,
 * digits, dots and dashes.
 */
export const TRUST_DOMAIN_PATTERN = /^[a-z0-9.-]+$/;
/** A workload's namespace as the proxy takes it (identity.namespace, POD_NAMESPACE): a Kubernetes namespace name, an RFC 1123 label. */
export const NAMESPACE_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** A workload's service account as the proxy takes it (identity.serviceAccount, WREN_SERVICE_ACCOUNT). */
export const SERVICE_ACCOUNT_PATTERN = /^[a-z0-9.-]+$/;
/** The control plane's gRPC address as the proxy (discovery.controlPlane, WREN_CONTROL_PLANE) and `wren inject` (--control-plane) accept it: host:port. */
export const CONTROL_PLANE_ADDRESS_PATTERN = /^[^\s:]+:\d+$/;

/** spiffe://<td>/ns/<ns>/sa/wren-control-plane: what proxies expect the control plane to present. */
export function controlPlaneSpiffeId(trustDomain: string, namespace = DEFAULT_CONTROL_PLANE_NAMESPACE): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${CONTROL_PLANE_SERVICE_ACCOUNT}`;
}

const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true };

/** The .proto sits beside this file in the repo; from dist/contract it is two levels up. */
function protoPath(): string {
  const candidates = ['./identity.proto', '../../contract/identity.proto'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`identity.proto not found (looked in ${candidates.join(', ')})`);
  return found;
}

export interface IdentityProto {
  /** Service definition for grpc.Server#addService. */
  readonly service: grpc.ServiceDefinition;
  /** Client constructor: `new Client(address, credentials, options)`; method `certify`. */
  readonly Client: grpc.ServiceClientConstructor;
}

let loaded: IdentityProto | undefined;

export function loadIdentityProto(): IdentityProto {
  if (loaded) return loaded;
  const loader = require('@grpc/proto-loader') as typeof protoLoader;
  const grpcJs = require('@grpc/grpc-js') as typeof grpc;
  const def = loader.loadSync(protoPath(), LOADER_OPTIONS);
  const pkg = grpcJs.loadPackageDefinition(def) as unknown as { wren: { identity: { v1: { Identity: grpc.ServiceClientConstructor } } } };
  const Client = pkg.wren.identity.v1.Identity;
  loaded = { service: Client.service, Client };
  return loaded;
}
