import { spawn } from 'node:child_process';
import {
  WREN_CHAINS, buildRules, parseNatSave, renderApply, renderCleanup, ruleArgs,
  type Family, type InterceptOptions, type NatState,
} from './iptables-rules.js';

/**
 * Applies the rules from iptables-rules.ts to the current network namespace. Prefers one
 * atomic `iptables-restore --noflush` transaction; falls back to individual
 * `iptables -t nat` calls when no restore binary exists. Works with both iptables
 * back ends: `auto` uses whatever `iptables` the image selects (Debian alternatives:
 * nft), `nft`/`legacy` pick iptables-nft / iptables-legacy explicitly, like
 * linkerd2-proxy-init's --iptables-mode (nft is Linkerd's default).
 */
export type IptablesMode = 'auto' | 'nft' | 'legacy';
export type ApplyMethod = 'restore' | 'commands';

export interface ExecResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program; `prefix` (e.g. ['ip', 'netns', 'exec', 'NS']) enters another namespace first. */
export type Exec = (cmd: string, args: readonly string[], input?: string) => Promise<ExecResult>;

export function createExec(prefix: readonly string[] = []): Exec {
  return (cmd, args, input) =>
    new Promise((resolve, reject) => {
      const argv = [...prefix, cmd, ...args];
      // stdin is a pipe only when there is input: a program that exits without reading
      // it (iptables does) would otherwise make our write fail with EPIPE.
      const child = spawn(argv[0], argv.slice(1), { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
      if (child.stdin) {
        // A program may still exit before reading all of its input; its exit code says what happened.
        child.stdin.on('error', () => undefined);
        child.stdin.end(input);
      }
    });
}

export class IptablesError extends Error {
  readonly code = 'IPTABLES_FAILED';
}

export function binaries(mode: IptablesMode, family: Family): { iptables: string; save: string; restore: string } {
  const base = family === 6 ? 'ip6tables' : 'iptables';
  const sfx = mode === 'auto' ? '' : `-${mode}`;
  return { iptables: `${base}${sfx}`, save: `${base}${sfx}-save`, restore: `${base}${sfx}-restore` };
}

export interface ApplyOptions {
  readonly mode?: IptablesMode;
  readonly method?: ApplyMethod;
  readonly family?: Family;
  readonly exec?: Exec;
}

async function must(exec: Exec, cmd: string, args: readonly string[], input?: string): Promise<string> {
  let r: ExecResult;
  try {
    r = await exec(cmd, args, input);
  } catch (e) {
    throw new IptablesError(`cannot run ${cmd}: ${(e as Error).message}`);
  }
  if (r.code !== 0) throw new IptablesError(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

export async function readNatState(a: ApplyOptions = {}): Promise<NatState> {
  const bin = binaries(a.mode ?? 'auto', a.family ?? 4);
  return parseNatSave(await must(a.exec ?? createExec(), bin.save, ['-t', 'nat']));
}

async function hasBinary(exec: Exec, cmd: string): Promise<boolean> {
  try {
    await exec(cmd, ['--version']);
    return true;
  } catch {
    return false;
  }
}

/** Install (or reinstall) the interception rules. Returns the resulting state. */
export async function applyIptables(o: InterceptOptions, a: ApplyOptions = {}): Promise<NatState> {
  const exec = a.exec ?? createExec();
  const family = a.family ?? 4;
  const bin = binaries(a.mode ?? 'auto', family);
  const current = await readNatState({ ...a, exec });
  const method = a.method ?? ((await hasBinary(exec, bin.restore)) ? 'restore' : 'commands');
  if (method === 'restore') {
    await must(exec, bin.restore, ['--noflush'], renderApply(o, family, current));
  } else {
    for (const j of current.jumps) await must(exec, bin.iptables, ['-t', 'nat', ...ruleArgs(j.replace(/^-A /, '-D '))]);
    for (const c of WREN_CHAINS) {
      if (current.chains.includes(c)) await must(exec, bin.iptables, ['-t', 'nat', '-F', c]);
      else await must(exec, bin.iptables, ['-t', 'nat', '-N', c]);
    }
    for (const line of buildRules(o, family)) await must(exec, bin.iptables, ['-t', 'nat', ...ruleArgs(line)]);
  }
  return readNatState({ ...a, exec });
}

/** Remove our chains and the jumps into them. A no-op when they are absent. */
export async function cleanupIptables(a: ApplyOptions = {}): Promise<NatState> {
  const exec = a.exec ?? createExec();
  const bin = binaries(a.mode ?? 'auto', a.family ?? 4);
  const current = await readNatState({ ...a, exec });
  const input = renderCleanup(current);
  if (!input) return current;
  const method = a.method ?? ((await hasBinary(exec, bin.restore)) ? 'restore' : 'commands');
  if (method === 'restore') await must(exec, bin.restore, ['--noflush'], input);
  else
    for (const line of input.split('\n').filter((l) => l.startsWith('-')))
      await must(exec, bin.iptables, ['-t', 'nat', ...ruleArgs(line)]);
  return readNatState({ ...a, exec });
}

/**
 * Whether the pod has an IPv6 address of its own: a global-scope (scope 0x00, ULAs
 * included) address on an interface other than lo, read from /proc/net/if_inet6 of the
 * namespace `exec` runs in (columns: address, ifindex, prefix length, scope, flags, name;
 * proc(5)). The file is absent when the kernel has IPv6 disabled. Like istio-iptables,
 * which programs ip6tables when the pod's own address is IPv6, so an IPv4-only pod never
 * needs the ip6tables nat table.
 */
export async function podHasIpv6(exec: Exec = createExec()): Promise<boolean> {
  let r: ExecResult;
  try {
    r = await exec('cat', ['/proc/net/if_inet6']);
  } catch {
    return false;
  }
  if (r.code !== 0) return false;
  return r.stdout.split('\n').some((l) => {
    const f = l.trim().split(/\s+/);
    return f.length >= 6 && f[3] === '00' && f[5] !== 'lo';
  });
}
