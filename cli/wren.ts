#!/usr/bin/env node
import { nodeVersionProblem } from './node-version.js';

type Out = (s: string) => void;
type Command = (argv: string[], out: Out, err: Out) => Promise<number>;

// Commands are imported on use: a sidecar should not pay (in start-up time and memory)
// for the Kubernetes client, the CA or the injector that only other commands need.
const COMMANDS: Record<string, [() => Promise<Command>, string]> = {
  demo: [async () => (await import('./demo.js')).demoCommand, 'run a whole mesh on loopback (control plane, sidecars, apps)'],
  proxy: [async () => (await import('./proxy-command.js')).proxyCommand, 'run the sidecar proxy'],
  'control-plane': [
    async () => {
      const { controlPlaneCommand } = await import('./control-plane.js');
      return (a, o, e) => controlPlaneCommand(a, { write: o }, { write: e });
    },
    'run the control plane (discovery, CA, injector)',
  ],
  certs: [async () => (await import('./certs.js')).certsCommand, 'create a dev mesh CA and workload certificates'],
  inject: [async () => { const { injectCommand } = await import('./inject.js'); return (a, o, e) => injectCommand(a, o, e); }, 'add the sidecar to Kubernetes YAML (offline injector)'],
  iptables: [async () => (await import('./iptables.js')).iptablesCommand, 'install the traffic interception rules (init container)'],
  'tls-scan': [async () => (await import('./tls-scan.js')).tlsScanCommand, 'security-check a TLS listener (versions, suites, client certs, renegotiation)'],
  stat: [async () => (await import('./stat.js')).statCommand, 'traffic per service, workload or edge: rate, success, latency, mTLS (--watch)'],
  check: [async () => (await import('./check/check-command.js')).checkCommand, 'check a cluster (or --pre an install, or a local mesh) with a hint per failure'],
  'proxy-status': [async () => (await import('./proxy-status.js')).proxyStatusCommand, 'per proxy: config SYNCED / STALE / NACKED, certificate, version'],
  'proxy-config': [async () => (await import('./proxy-config.js')).proxyConfigCommand, "what one proxy has: clusters, routes, policy, certs"],
  'trust-anchors': [async () => (await import('./trust-anchors.js')).trustAnchorsCommand, 'check that every proxy trusts / uses a new root (trust-anchor rotation)'],
};

const USAGE = `Usage: wren <command> [options]

Commands:
${Object.entries(COMMANDS).map(([n, [, d]]) => `  ${n.padEnd(15)}${d}`).join('\n')}

Run 'wren <command> --help' for a command's options.
`;

export async function main(argv: string[]): Promise<number> {
  const out: Out = (s) => void process.stdout.write(s);
  const err: Out = (s) => void process.stderr.write(s);
  const old = nodeVersionProblem(process.versions.node);
  if (old !== null) {
    err(old);
    return 1;
  }
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    out(USAGE);
    return cmd ? 0 : 2;
  }
  const entry = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!entry) {
    err(`wren: unknown command '${cmd}'\n\n${USAGE}`);
    return 2;
  }
  return (await entry[0]())(rest, out, err);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: Error) => {
    process.stderr.write(`wren: ${e.stack ?? e.message}\n`);
    process.exitCode = 1;
  },
);
