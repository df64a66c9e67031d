import { iptablesCommand } from './iptables.js';

async function run(argv: string[]) {
  let out = '';
  let err = '';
  const code = await iptablesCommand(argv, (s) => (out += s), (s) => (err += s));
  return { code, out, err };
}

test('--help', async () => {
  const r = await run(['--help']);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/^Usage: wren iptables/);
  expect(r.out).toContain('--skip-outbound-cidrs');
});

test('--dry-run prints iptables-restore input with the given exclusions and changes nothing', async () => {
  const r = await run(['--dry-run', '--proxy-uid', '2102', '--inbound-port', '15006', '--outbound-port', '15001',
    '--skip-inbound-ports', '22,4191', '--skip-outbound-ports', '443', '--skip-outbound-cidrs', '10.0.0.0/8']);
  expect(r.code).toBe(0);
  const lines = r.out.split('\n');
  expect(lines[0]).toBe('# iptables-restore --noflush');
  expect(lines).toContain('*nat');
  expect(lines).toContain('-A WREN_INBOUND -p tcp -m multiport --dports 22,4191 -m comment --comment wren/skip-inbound-ports -j RETURN');
  expect(lines).toContain('-A WREN_OUTPUT -m owner --uid-owner 2102 -m comment --comment wren/proxy-uid -j RETURN');
  expect(lines).toContain('-A WREN_OUTPUT -d 10.0.0.0/8 -m comment --comment wren/skip-outbound-cidrs -j RETURN');
  expect(lines).toContain('-A WREN_OUTPUT -p tcp -m comment --comment wren/redirect-outbound -j REDIRECT --to-ports 15001');
  expect(lines).toContain('COMMIT');
});

test('--metrics-port: the proxy metrics port is excluded from inbound capture (default 15020)', async () => {
  expect((await run(['--dry-run'])).out).toContain('--dports 15000,15001,15006,15020 -m comment --comment wren/proxy-ports -j RETURN');
  expect((await run(['--dry-run', '--metrics-port', '9102'])).out).toContain('--dports 9102,15000,15001,15006 -m comment --comment wren/proxy-ports -j RETURN');
  expect((await run(['--dry-run', '--metrics-port', 'x'])).code).toBe(2);
});

test('--dry-run --cleanup prints the removal of the chains and jumps, not the rules it would install', async () => {
  const r = await run(['--dry-run', '--cleanup']);
  expect(r.code).toBe(0);
  expect(r.out.split('\n')).toEqual([
    '# iptables-restore --noflush',
    '*nat',
    '-D PREROUTING -m comment --comment wren/inbound -j WREN_INBOUND',
    '-D OUTPUT -m comment --comment wren/outbound -j WREN_OUTPUT',
    '-F WREN_INBOUND',
    '-F WREN_OUTPUT',
    '-X WREN_INBOUND',
    '-X WREN_OUTPUT',
    'COMMIT',
    '',
  ]);
});

test('--dry-run --ipv6 --iptables-mode legacy prints both families for the legacy back end', async () => {
  const r = await run(['--dry-run', '--ipv6', '--iptables-mode', 'legacy', '--skip-outbound-cidrs', '10.0.0.0/8,fd00::/8']);
  expect(r.code).toBe(0);
  expect(r.out).toContain('# iptables-legacy-restore --noflush');
  expect(r.out).toContain('# ip6tables-legacy-restore --noflush');
  const [v4, v6] = r.out.split('# ip6tables');
  expect(v4).toContain('-d 10.0.0.0/8');
  expect(v4).not.toContain('fd00::/8');
  expect(v6).toContain('-d fd00::/8');
});

test.each([
  [['--proxy-uid', 'wren'], /numeric UID/],
  [['--inbound-port', '70000'], /port 1-65535/],
  [['--skip-outbound-ports', '443,https'], /malformed list/],
  [['--skip-outbound-cidrs', '10.0.0.0/40'], /malformed list/],
  [['--skip-outbound-cidrs', 'fd00:::1/64'], /malformed list/],
  [['--iptables-mode', 'bpf'], /auto, nft or legacy/],
  [['--method', 'magic'], /restore or commands/],
  [['--bogus'], /Unknown option/],
  [['extra'], /unexpected argument/],
])('usage error %j', async (argv, msg) => {
  const r = await run(argv as string[]);
  expect(r.code).toBe(2);
  expect(r.err).toMatch(msg as RegExp);
});
