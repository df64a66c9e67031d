/**
 * What a socket read costs node, by how it is read (issue 12): `npm run bench -- socket-reads`.
 * An echo server in a child process; this process keeps 16 loopback connections each
 * sending 100 bytes and waiting for them back, for 2 s per mode, the modes interleaved
 * over 5 rounds. CPU of this process (user and system, `process.cpuUsage`) per round trip
 * (one read and one write), median of the rounds:
 * - `data events`: node's own reads (a Buffer allocated per read, pushed through the Readable, a 'data' event);
 * - `direct`: proxy/net/direct-reads.ts setDirectReads (node's Buffer, no Readable push or event);
 * - `shared buffer`: setSharedReads (net.Socket's onread set up after the fact: no Buffer per read).
 * The sidecars' listeners and the mesh multiplexer read the third way (docs/http1-codec.md).
 * One run on a shared machine: compare the modes with each other, not across runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { setDirectReads, setSharedReads } from '../proxy/net/direct-reads.js';
import { interleave, median } from './interleave.js';

const CONNECTIONS = 16;
const ROUND_MS = 2000;
const ROUNDS = 5;
const MESSAGE = Buffer.alloc(100, 0x61);
const ECHO = `const s = require('node:net').createServer({ noDelay: true }, (c) => { c.on('error', () => {}); c.on('data', (d) => c.write(d)); });
s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;

type Mode = 'data events' | 'direct' | 'shared buffer';
const MODES: readonly Mode[] = ['data events', 'direct', 'shared buffer'];

interface Round {
  readonly roundTrips: number;
  readonly cpuUs: number;
}

async function echoServer(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['-e', ECHO], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { child, port: Number(line.toString().trim()) };
}

async function round(port: number, mode: Mode): Promise<Round> {
  let n = 0;
  let stop = false;
  const sockets: Socket[] = [];
  for (let i = 0; i < CONNECTIONS; i++) {
    const s = connect({ port, host: '127.0.0.1', noDelay: true });
    s.on('error', () => undefined);
    await once(s, 'connect');
    // Each reply is 100 bytes in one read here; a reply split across reads is answered once its last byte came.
    let got = 0;
    const onData = (d: Buffer): void => {
      got += d.length;
      if (got < MESSAGE.length) return;
      got = 0;
      n++;
      if (!stop) s.write(MESSAGE);
    };
    s.on('data', onData);
    if (mode === 'direct') setDirectReads(s, onData);
    else if (mode === 'shared buffer' && !setSharedReads(s, onData)) throw new Error('setSharedReads refused a TCP socket');
    sockets.push(s);
  }
  const c0 = process.cpuUsage();
  for (const s of sockets) s.write(MESSAGE);
  await new Promise((r) => setTimeout(r, ROUND_MS));
  stop = true;
  const c = process.cpuUsage(c0);
  const roundTrips = n;
  for (const s of sockets) s.destroy();
  await new Promise((r) => setTimeout(r, 50));
  return { roundTrips, cpuUs: c.user + c.system };
}

export async function runSocketReadsBench(): Promise<Record<Mode, { roundTripsPerS: number; cpuUsPerRoundTrip: number }>> {
  const { child, port } = await echoServer();
  try {
    const runs = await interleave(
      ROUNDS,
      MODES.map((m) => [m, () => round(port, m)] as const),
    );
    console.log(`== socket reads: ${CONNECTIONS} loopback connections, 100-byte ping-pong, ${ROUND_MS / 1000} s a round, median of ${ROUNDS} interleaved rounds ==`);
    console.log('| mode | round trips/s | CPU µs per round trip (this process) |');
    console.log('|---|---:|---:|');
    const out = {} as Record<Mode, { roundTripsPerS: number; cpuUsPerRoundTrip: number }>;
    for (const m of MODES) {
      const rs = runs.get(m)!;
      const rate = median(rs.map((r) => r.roundTrips / (ROUND_MS / 1000)));
      const cpu = median(rs.map((r) => r.cpuUs / r.roundTrips));
      out[m] = { roundTripsPerS: Math.round(rate), cpuUsPerRoundTrip: Number(cpu.toFixed(2)) };
      console.log(`| ${m} | ${Math.round(rate)} | ${cpu.toFixed(2)} |`);
    }
    return out;
  } finally {
    child.kill();
  }
}
