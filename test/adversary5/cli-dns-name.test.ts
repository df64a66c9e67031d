import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { lookup } from 'node:dns/promises';
import { join } from 'node:path';
import { proxyStatusCommand } from '../../cli/proxy-status.js';
import { statCommand } from '../../cli/stat.js';
import { seededRandom, systemClock } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import { ControlPlane } from '../../control-plane/server.js';
import { DirSource } from '../../control-plane/sources/dir-source.js';

/**
 * ADV5-14 (low): the operating CLI cannot reach a control plane by DNS name.
 *
 * `wren stat` / `wren proxy-status` / `wren check --admin` take `--control-plane HOST:PORT`
 * and send `Host: HOST:PORT`; the control plane's admin port refuses every DNS name but
 * `localhost` (common/admin-host.ts, DNS-rebinding protection meant for browsers). What an
 * operator does: `wren stat --control-plane wren-control-plane.wren-system:15014` from a pod
 * or a CI job (the Service's name, the stable way to reach it). What happens: exit 1,
 * "HTTP 403 ... the admin port answers only requests for localhost or an IP address". What
 * should happen: the CLI reaches it (it is not a browser: it can send the address it
 * connected to, or `localhost`, as Host).
 */
let dir: string;
let cp: ControlPlane;
/**
 * A DNS name of this host that is not `localhost` and resolves to a loopback address (the
 * machine's own name: 127.0.0.1 in many VMs' /etc/hosts, 127.0.1.1 in Debian's), with that
 * address, where the control plane listens; or null, and the test is skipped saying why.
 */
const named: { name: string; address: string } | null = await (async () => {
  const h = hostname();
  const address = await lookup(h, { family: 4 }).then((a) => a.address, () => '');
  return h !== 'localhost' && address.startsWith('127.') ? { name: h, address } : null;
})();
const name = named?.name ?? null;
if (!named) process.stderr.write(`\n! test/adversary5/cli-dns-name.test.ts: ADV5-14 SKIPPED: this host's name (${hostname()}) does not resolve to a loopback address (add it to /etc/hosts), so the control plane has no DNS name here\n`);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-adv5-dns-'));
  cp = await ControlPlane.start({
    listen: `${named?.address ?? '127.0.0.1'}:0`, admin: `${named?.address ?? '127.0.0.1'}:0`, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(3), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir, watchDebounceMs: 10, rescanMs: 5_000 }),
  });
  await cp.whenReady();
});

afterAll(async () => {
  await cp?.close(100);
  await rm(dir, { recursive: true, force: true });
});

// Skipped where this host has no name resolving to 127.0.0.1 other than localhost.
(name !== null ? test : test.skip)('ADV5-14: wren proxy-status and wren stat reach the control plane through a DNS name of it', async () => {
  // ADVERSARY: ADV5-14
  const run = async (cmd: typeof statCommand, ...args: string[]) => {
    let out = '';
    let err = '';
    const code = await cmd(args, (s) => (out += s), (s) => (err += s));
    return { code, said: (out + err).split('\n').find((l) => l.trim() !== '') ?? '' };
  };
  const status = await run(proxyStatusCommand, '--control-plane', `${name}:${cp.adminPort}`);
  const stat = await run(statCommand, '--control-plane', `${name}:${cp.adminPort}`);
  // On main: both exit 1 with "... 403 the admin port answers only requests for localhost or an IP address ...".
  expect({ status: status.code, stat: stat.code, statSaid: stat.said }).toEqual({ status: 0, stat: 0, statSaid: expect.not.stringMatching(/403/) });
});
