import * as k8s from '@kubernetes/client-node';
import { systemClock, systemRandom } from '../common/clock.js';
import { createLogger, isLevel, type Level, type Logger } from '../common/logger.js';
import { ControlPlane, splitHostPort } from './server.js';
import { DirSource } from './sources/dir-source.js';
import { KubernetesSource } from './sources/kubernetes-source.js';

/** Parsed command line of `wren control-plane`. */
export interface ControlPlaneArgs {
  readonly source: { readonly kind: 'kubernetes'; readonly kubeconfig: string | null } | { readonly kind: 'dir'; readonly path: string };
  readonly listen: string;
  readonly admin: string | null;
  readonly trustDomain: string;
  readonly logLevel: Level;
  readonly debounceMs: number;
  readonly help: boolean;
}

export const CONTROL_PLANE_USAGE = `Usage: wren control-plane [options]

Serves mesh discovery (wren.discovery.v1) to proxies over gRPC.

Options:
  --source kubernetes|dir:PATH  where services come from (default dir:./mesh)
                                kubernetes: watch the API server (in-cluster or KUBECONFIG)
                                dir:PATH: YAML manifests in PATH, re-read on change
  --kubeconfig PATH             kubeconfig for --source kubernetes (default: in-cluster, then ~/.kube/config)
  --listen HOST:PORT            gRPC discovery address (default 127.0.0.1:15010)
  --admin HOST:PORT|off         admin HTTP: /ready /live /metrics /debug/proxies /debug/view (default 127.0.0.1:15014)
  --trust-domain NAME           SPIFFE trust domain of endpoint identities (default cluster.local)
  --debounce-ms N               coalesce bursts of changes for N ms before pushing (default 2)
  --log-level debug|info|warn|error (default info)
  -h, --help                    show this help
`;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function parseControlPlaneArgs(argv: readonly string[]): ControlPlaneArgs {
  let source: ControlPlaneArgs['source'] = { kind: 'dir', path: './mesh' };
  let kubeconfig: string | null = null;
  let listen = '127.0.0.1:15010';
  let admin: string | null = '127.0.0.1:15014';
  let trustDomain = 'cluster.local';
  let logLevel: Level = 'info';
  let debounceMs = 2;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '-h':
      case '--help':
        help = true;
        break;
      case '--source': {
        const v = value();
        if (v === 'kubernetes') source = { kind: 'kubernetes', kubeconfig: null };
        else if (v.startsWith('dir:') && v.length > 4) source = { kind: 'dir', path: v.slice(4) };
        else throw new UsageError(`--source: expected kubernetes or dir:PATH, got ${JSON.stringify(v)}`);
        break;
      }
      case '--kubeconfig':
        kubeconfig = value();
        break;
      case '--listen':
        listen = value();
        splitHostPort(listen);
        break;
      case '--admin': {
        const v = value();
        admin = v === 'off' ? null : v;
        if (admin) splitHostPort(admin);
        break;
      }
      case '--trust-domain':
        trustDomain = value();
        if (!/^[a-z0-9.-]+$/.test(trustDomain)) throw new UsageError(`--trust-domain: expected a DNS name, got ${JSON.stringify(trustDomain)}`);
        break;
      case '--log-level': {
        const v = value();
        if (!isLevel(v)) throw new UsageError(`--log-level: expected debug, info, warn or error, got ${JSON.stringify(v)}`);
        logLevel = v;
        break;
      }
      case '--debounce-ms': {
        const v = Number(value());
        if (!Number.isFinite(v) || v < 0 || v > 1000) throw new UsageError('--debounce-ms: expected a number of ms in 0..1000');
        debounceMs = v;
        break;
      }
      default:
        throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  if (source.kind === 'kubernetes') source = { kind: 'kubernetes', kubeconfig };
  return { source, listen, admin, trustDomain, logLevel, debounceMs, help };
}

/** Starts a control plane from parsed args (system clock and randomness). */
export async function startControlPlane(args: ControlPlaneArgs, logger: Logger = createLogger({ level: args.logLevel, base: { component: 'control-plane' } })): Promise<ControlPlane> {
  const src = args.source;
  return ControlPlane.start({
    listen: args.listen,
    admin: args.admin,
    trustDomain: args.trustDomain,
    clock: systemClock,
    random: systemRandom,
    logger,
    debounceMs: args.debounceMs,
    processMetrics: true,
    source: (ctx) => {
      if (src.kind === 'dir') return new DirSource({ ...ctx, dir: src.path });
      const kc = new k8s.KubeConfig();
      if (src.kubeconfig) kc.loadFromFile(src.kubeconfig);
      else kc.loadFromDefault();
      return new KubernetesSource({ ...ctx, kubeConfig: kc });
    },
  });
}

/** Runs until SIGTERM/SIGINT, then shuts down gracefully. */
export async function runControlPlaneUntilSignal(args: ControlPlaneArgs, logger?: Logger): Promise<void> {
  const cp = await startControlPlane(args, logger);
  await new Promise<void>((resolve) => {
    const onSignal = (sig: string): void => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      void cp.close().then(resolve, resolve);
      void sig;
    };
    const onTerm = (): void => onSignal('SIGTERM');
    const onInt = (): void => onSignal('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
  });
}
