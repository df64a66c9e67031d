import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededRandom, systemClock } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import { ControlPlane, type ControlPlaneOptions } from '../../control-plane/server.js';
import { DirSource, type DirSourceOptions } from '../../control-plane/sources/dir-source.js';
import { replaceFile } from './replace-file.js';

export interface DirControlPlane {
  readonly cp: ControlPlane;
  /** The suite's temporary folder (removed by close/kill); the manifests are in `dir`, its `mesh` subfolder. */
  readonly root: string;
  readonly dir: string;
  /** The control plane's DirSource (its errors(), ignored()). */
  readonly source: DirSource;
  /** A graceful close (streams end, `graceMs` for them), then the folder removed. */
  close(graceMs?: number): Promise<void>;
  /** An abrupt stop (ControlPlane.kill), then the folder removed. */
  kill(): Promise<void>;
}

type ControlOptions = Partial<Omit<ControlPlaneOptions, 'source' | 'trustDomain' | 'random' | 'clock'>>;

export interface DirControlPlaneOptions {
  /** The temporary folder's name prefix, e.g. `wren-health-` (it says which suite left it behind). */
  readonly prefix: string;
  readonly trustDomain: string;
  /** The control plane's seeded randomness (each suite keeps its own seed). */
  readonly seed: number;
  /** Manifests written into `dir` before the control plane starts (file name -> content). */
  readonly mesh?: Readonly<Record<string, string>>;
  /** Files written into `root` before the control plane starts (a tokens file, a CA). */
  readonly rootFiles?: Readonly<Record<string, string>>;
  /** The DirSource's settings beside its folder (watchDebounceMs, rescanMs, displayDir, watch). */
  readonly dirSource?: Pick<DirSourceOptions, 'displayDir' | 'watchDebounceMs' | 'rescanMs' | 'watch'>;
  /** The rest of the control plane's options (or made from `root`, e.g. a tokens file there); default admin on 127.0.0.1:0 and a silent logger. */
  readonly control?: ControlOptions | ((root: string) => ControlOptions);
  /** Wait for the first index (cp.whenReady); default true. */
  readonly ready?: boolean;
}

/**
 * A real control plane reading a fresh temporary directory (the dir source), as most
 * control-plane suites start it: the folder made, the given manifests written, the
 * control plane listening on loopback port 0 with a seeded random and the system clock.
 */
export async function startDirControlPlane(o: DirControlPlaneOptions): Promise<DirControlPlane> {
  const root = await mkdtemp(join(tmpdir(), o.prefix));
  const dir = join(root, 'mesh');
  await mkdir(dir);
  for (const [name, content] of Object.entries(o.rootFiles ?? {})) await replaceFile(join(root, name), content);
  for (const [name, content] of Object.entries(o.mesh ?? {})) await replaceFile(join(dir, name), content);
  let source: DirSource | undefined;
  const cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: '127.0.0.1:0', logger: silentLogger, ...(typeof o.control === 'function' ? o.control(root) : o.control),
    trustDomain: o.trustDomain, clock: systemClock, random: seededRandom(o.seed),
    source: (ctx) => (source = new DirSource({ ...ctx, dir, ...o.dirSource })),
  });
  if (o.ready ?? true) await cp.whenReady();
  const remove = () => rm(root, { recursive: true, force: true });
  return {
    cp, root, dir, source: source!,
    async close(graceMs = 100) {
      await cp.close(graceMs);
      await remove();
    },
    async kill() {
      await cp.kill();
      await remove();
    },
  };
}
