import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { seededRandom, systemClock } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import { ControlPlane } from '../../control-plane/server.js';
import { DirSource } from '../../control-plane/sources/dir-source.js';

/**
 * ControlPlaneOptions.grpcConnections went to grpc-js unchecked (it arms timers with them,
 * and Node takes a NaN or negative delay as 1 ms). Checked at start now, the error naming
 * the field.
 */
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(`${tmpdir()}/wren-adv29-grpc-`);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

test.each([
  [{ keepaliveMs: Number.NaN }, /^grpcConnections\.keepaliveMs: expected a number, got null$/],
  [{ maxIdleMs: -5 }, /^grpcConnections\.maxIdleMs: expected a number in 1\.\.2147483647, got -5$/],
  [{ maxConcurrentStreams: 0.5 }, /^grpcConnections\.maxConcurrentStreams: expected an integer/],
  [{ keepalive: 1000 } as object, /^grpcConnections\.keepalive: unknown field/],
])('embedded gRPC connection limits: %j is refused at start, the error naming the field (adv29)', async (grpcConnections, msg) => {
  const start = ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(1), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir }),
    grpcConnections,
  });
  await expect(start).rejects.toThrow(msg);
});
