import { applyIptables, binaries, cleanupIptables, podHasIpv6, type Exec } from './iptables.js';
import { DEFAULT_INTERCEPT } from './iptables-rules.js';

/**
 * A recording stand-in for the iptables binaries: it keeps a nat table in memory and
 * answers iptables-save from it, so the apply/cleanup control flow (which binary, which
 * input, fallback to single commands) is checked without root. The real kernel path is
 * exercised in test/iptables-netns.test.ts.
 */
function fakeIptables(opts: { restore: boolean }) {
  const calls: { cmd: string; args: readonly string[]; input?: string }[] = [];
  let chains = new Set<string>();
  let rules: string[] = [];
  const run = (line: string) => {
    const [flag, chain] = line.split(/\s+/);
    const rest = line.slice(flag.length + 1).replace(/"/g, '');
    if (flag === '-A') rules.push(`-A ${rest}`);
    else if (flag === '-D') rules = rules.filter((r) => r.replace(/"/g, '') !== `-A ${rest}`);
    else if (flag === '-F') rules = rules.filter((r) => r.split(' ')[1] !== chain);
    else if (flag === '-X') chains.delete(chain);
    else if (flag === '-N') chains.add(chain);
  };
  const exec: Exec = async (cmd, args, input) => {
    calls.push({ cmd, args, input });
    if (cmd.endsWith('-save')) {
      const quoted = rules.map((r) => r.replace(/--comment (\S+)/, '--comment "$1"'));
      return { code: 0, stdout: ['*nat', ':PREROUTING ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ...[...chains].map((c) => `:${c} - [0:0]`), ...quoted, 'COMMIT', ''].join('\n'), stderr: '' };
    }
    if (cmd.endsWith('-restore')) {
      if (!opts.restore) throw Object.assign(new Error(`spawn ${cmd} ENOENT`), { code: 'ENOENT' });
      if (args[0] === '--version') return { code: 0, stdout: 'v1.8.9', stderr: '' };
      for (const l of (input ?? '').split('\n')) {
        const decl = /^:(\S+) - /.exec(l);
        if (decl) {
          chains.add(decl[1]);
          run(`-F ${decl[1]}`);
        } else if (l.startsWith('-')) run(l);
      }
      return { code: 0, stdout: '', stderr: '' };
    }
    if (args[0] === '-t') run(args.slice(2).join(' '));
    return { code: 0, stdout: '', stderr: '' };
  };
  return { exec, calls, state: () => ({ chains: [...chains], rules: [...rules] }), reset: () => ((chains = new Set()), (rules = [])) };
}

test.each([true, false])('apply twice leaves one set of rules; cleanup removes all (restore available: %s)', async (restore) => {
  const f = fakeIptables({ restore });
  const o = { ...DEFAULT_INTERCEPT, skipOutboundPorts: ['443'] };
  const s1 = await applyIptables(o, { exec: f.exec, mode: 'nft' });
  const s2 = await applyIptables(o, { exec: f.exec, mode: 'nft' });
  expect(s1).toEqual(s2);
  expect(s2.jumps).toHaveLength(2);
  expect(s2.rules).toHaveLength(6); // inbound: proxy ports, redirect; outbound: uid, lo, 443, redirect
  expect(f.calls.every((c) => c.cmd.startsWith('iptables-nft'))).toBe(true);
  if (restore) expect(f.calls.some((c) => c.cmd === 'iptables-nft-restore' && c.args[0] === '--noflush')).toBe(true);
  else expect(f.calls.some((c) => c.cmd === 'iptables-nft' && c.args.join(' ').startsWith('-t nat -A WREN_OUTPUT'))).toBe(true);
  const s3 = await cleanupIptables({ exec: f.exec, mode: 'nft' });
  expect(s3).toEqual({ chains: [], jumps: [], rules: [] });
  expect(f.state()).toEqual({ chains: [], rules: [] });
});

test('a failing iptables surfaces its stderr', async () => {
  const exec: Exec = async (cmd) =>
    cmd.endsWith('-save') ? { code: 0, stdout: '*nat\nCOMMIT\n', stderr: '' } : { code: 2, stdout: '', stderr: 'iptables-restore: line 4 failed' };
  await expect(applyIptables(DEFAULT_INTERCEPT, { exec, method: 'restore' })).rejects.toThrow(/exited 2: iptables-restore: line 4 failed/);
});

test('binary names per mode and family', () => {
  expect(binaries('auto', 4)).toEqual({ iptables: 'iptables', save: 'iptables-save', restore: 'iptables-restore' });
  expect(binaries('legacy', 6)).toEqual({ iptables: 'ip6tables-legacy', save: 'ip6tables-legacy-save', restore: 'ip6tables-legacy-restore' });
});

test('podHasIpv6: a global or ULA address on a non-lo interface counts; ::1, link-local and a kernel without IPv6 do not', async () => {
  // /proc/net/if_inet6: address, ifindex, prefix length, scope (00 global, 10 host, 20 link), flags, interface.
  const file = (lines: string[]): Exec => async (cmd, args) => {
    expect([cmd, ...args]).toEqual(['cat', '/proc/net/if_inet6']);
    return { code: 0, stdout: lines.join('\n') + '\n', stderr: '' };
  };
  const lo = '00000000000000000000000000000001 01 80 10 80       lo';
  const link = 'fe80000000000000a8b1c2fffed3e4f5 02 40 20 80     eth0';
  const ula = 'fd000077000000000000000000000003 02 40 00 80     eth0';
  expect(await podHasIpv6(file([lo, link]))).toBe(false);
  expect(await podHasIpv6(file([lo, link, ula]))).toBe(true);
  expect(await podHasIpv6(async () => ({ code: 1, stdout: '', stderr: 'cat: /proc/net/if_inet6: No such file or directory' }))).toBe(false);
});
