import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Timer } from '../../common/clock.js';
import { translateCluster } from '../translate/translate.js';
import { opaquePortsByPod } from '../translate/opaque-ports.js';
import { compileRoutes, type RouteStatus } from '../translate/route-compile.js';
import { loadManifestFile, mergeManifests, type IgnoredObject, type LoadedFile } from './manifest-loader.js';
import type { MeshSource, SourceContext } from './source.js';
import { RefusedRoutes } from './refused-routes.js';
import type { KRoute } from '../translate/route-objects.js';
import type { SourceRejection } from './source-rejection.js';

/**
 * The embedded default source: a directory of YAML/JSON manifests (Service,
 * EndpointSlice, Pod, TrafficPolicy, PeerAuthentication, AuthorizationPolicy, Gateway API
 * HTTPRoute / GRPCRoute / ReferenceGrant as real Kubernetes objects, plus the compact
 * MeshService), re-read on change. Route conditions that are not True (a route not
 * Accepted, a backendRef not resolved) are logged, since there is no status to write here. fs.watch (recursive) triggers a rescan after a short
 * debounce (editors write in several steps); a periodic rescan catches what fs.watch
 * misses (network filesystems, some editors' rename dance, a watcher that died).
 * A rescan reads every file but re-parses only those whose content changed.
 * The source is ready only after a scan of the directory succeeded: a directory that is
 * missing or unreadable at start (a mistyped `dir:`, a mount not there yet) keeps it not
 * ready, retried on the rescan schedule, since an empty view would wipe every proxy's
 * config; one that becomes unreadable later keeps the last good view. Either way the
 * problem is logged and listed with the rejections.
 */
export interface DirSourceOptions extends SourceContext {
  readonly dir: string;
  /** How file names are shown in errors; default `dir` as given (so `mesh/web.yaml`). */
  readonly displayDir?: string;
  readonly watchDebounceMs?: number;
  readonly rescanMs?: number;
  /** false: periodic rescans only (default true: fs.watch plus rescans). */
  readonly watch?: boolean;
}

const MANIFEST = /\.(ya?ml|json)$/i;

export class DirSource implements MeshSource {
  readonly name: string;
  private readonly files = new Map<string, { content: string; loaded: LoadedFile }>();
  private watcher: FSWatcher | null = null;
  private debounce: Timer | null = null;
  private rescanTimer: Timer | null = null;
  private scanning: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private currentErrors: readonly string[] = [];
  private currentRejected: readonly SourceRejection[] = [];
  private currentIgnored: readonly IgnoredObject[] = [];
  private currentRouteProblems: readonly string[] = [];
  /** Why the last scan failed (the directory cannot be read); null after a scan that succeeded. */
  private scanProblem: string | null = null;
  private readonly syncWaiters: (() => void)[] = [];
  /** The version of each route the proxies accept: kept in force while a newer one is refused. */
  private lastGoodRoutes: ReadonlyMap<string, KRoute> = new Map();
  /** The file each object in force was taken from: an object defined again elsewhere stays with it. */
  private owners: ReadonlyMap<string, string> = new Map();
  private readonly refusedRoutes: RefusedRoutes;

  constructor(private readonly o: DirSourceOptions) {
    this.name = `dir:${o.dir}`;
    this.refusedRoutes = new RefusedRoutes('dir', o.metrics, o.logger);
  }

  /** Current rejections (`file: path: problem`), also logged when they appear. */
  errors(): readonly string[] {
    return this.scanProblem ? [`${this.display}: ${this.scanProblem}`, ...this.currentErrors] : this.currentErrors;
  }

  /** The same rejections by object: kind/namespace/name, field path, reason and file (GET /debug/rejected, `wren check`). */
  rejected(): readonly SourceRejection[] {
    if (!this.scanProblem) return this.currentRejected;
    return [{ kind: '', namespace: '', name: '', path: '', reason: this.scanProblem, file: this.display }, ...this.currentRejected];
  }

  private get display(): string {
    return this.o.displayDir ?? this.o.dir;
  }

  /** Objects of kinds this source does not read (a Gateway, a Deployment, a typo in `kind`), by file. */
  ignored(): readonly IgnoredObject[] {
    return this.currentIgnored;
  }

  /** Resolves once a scan of the directory has succeeded and the store is marked ready (or on stop). */
  async start(): Promise<void> {
    this.stopped = false;
    const synced = new Promise<void>((r) => this.syncWaiters.push(r));
    await this.rescan();
    this.armRescan();
    await synced;
  }

  private scanned(): void {
    if (this.stopped) return;
    const recovered = this.scanProblem !== null;
    if (recovered) this.o.logger.info('directory scan succeeded again', { dir: resolve(this.o.dir) });
    this.scanProblem = null;
    if (this.o.store.ready && !recovered) return;
    // The first good scan, or the first after the directory came back (maybe as a new directory: watch that one).
    if (this.o.watch !== false) this.startWatch();
    if (this.o.store.ready) return;
    this.o.store.markReady();
    for (const w of this.syncWaiters.splice(0)) w();
  }

  private scanFailed(e: Error): void {
    // A file system error is the directory's (readdir: missing, not a directory, no permission); anything else is a bug of the scan itself.
    const problem = (e as NodeJS.ErrnoException).code ? `cannot read the directory: ${e.message}` : `scan failed: ${e.message}`;
    // Once per distinct problem, not once per rescan.
    if (problem !== this.scanProblem)
      this.o.logger.error(this.o.store.ready ? 'directory scan failed; keeping the last good view' : 'directory scan failed; not ready until it succeeds', {
        dir: resolve(this.o.dir), error: e.message, retryInMs: this.o.rescanMs ?? 2_000,
      });
    this.scanProblem = problem;
  }

  private startWatch(): void {
    this.watcher?.close();
    this.watcher = null;
    try {
      const w = watch(this.o.dir, { recursive: true, persistent: false }, () => this.schedule());
      this.watcher = w;
      w.on('error', (e) => {
        this.o.logger.warn('directory watch failed; relying on periodic rescans', { dir: this.o.dir, error: e.message });
        w.close();
        // A watcher replaced since (the directory came back) is not this one's to drop.
        if (this.watcher === w) this.watcher = null;
      });
    } catch (e) {
      this.o.logger.warn('cannot watch directory; relying on periodic rescans', { dir: this.o.dir, error: (e as Error).message });
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = null;
    if (this.debounce) this.o.clock.clearTimeout(this.debounce);
    if (this.rescanTimer) this.o.clock.clearTimeout(this.rescanTimer);
    await this.scanning;
    for (const w of this.syncWaiters.splice(0)) w();
  }

  private schedule(): void {
    if (this.stopped || this.debounce) return;
    this.debounce = this.o.clock.setTimeout(() => {
      this.debounce = null;
      void this.rescan();
    }, this.o.watchDebounceMs ?? 30);
  }

  private armRescan(): void {
    if (this.stopped) return;
    this.rescanTimer = this.o.clock.setTimeout(() => {
      void this.rescan().finally(() => this.armRescan());
    }, this.o.rescanMs ?? 2_000);
    this.rescanTimer.unref?.();
  }

  /** Re-read the directory now (serialized: a call during a scan runs one more scan after it). */
  async rescan(): Promise<void> {
    if (this.scanning) {
      this.again = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      do {
        this.again = false;
        try {
          await this.scanOnce();
          this.scanned();
        } catch (e) {
          this.scanFailed(e as Error);
        }
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.scanning = null;
    });
    return this.scanning;
  }

  private async scanOnce(): Promise<void> {
    const names = (await readdir(this.o.dir, { recursive: true })).filter((n) => MANIFEST.test(n) && !n.split(/[\\/]/).some((p) => p.startsWith('.'))).sort();
    let changed = false;
    const present = new Set(names);
    for (const name of [...this.files.keys()]) {
      if (!present.has(name)) {
        this.files.delete(name);
        changed = true;
      }
    }
    const display = this.display;
    for (const name of names) {
      let content: string;
      try {
        content = await readFile(join(this.o.dir, name), 'utf8');
      } catch {
        continue; // removed between readdir and read: the next scan sees it gone
      }
      const prev = this.files.get(name);
      if (prev && prev.content === content) continue;
      const loaded = loadManifestFile(join(display, name), content, prev?.loaded);
      for (const err of loaded.errors) this.o.logger.warn('manifest rejected; the last good version stays', { error: err });
      for (const w of loaded.warnings) this.o.logger.warn('manifest accepted with values that never match', { warning: w });
      for (const r of loaded.rejected)
        if (r.failClosed)
          this.o.logger.warn(`${r.kind} refused with no last good version: enforced fail-closed`, {
            object: `${r.namespace}/${r.name}`, file: r.file, path: r.path, error: r.reason, enforced: r.failClosed,
          });
      if (loaded.errors.length > 0) this.o.metrics.invalidObjects.inc({ source: 'dir' }, loaded.errors.length);
      this.reportIgnored(loaded.ignored);
      this.files.set(name, { content, loaded });
      changed = true;
    }
    if (!changed && this.o.store.ready) return;
    this.currentIgnored = Object.freeze(names.flatMap((n) => this.files.get(n)?.loaded.ignored ?? []));
    const merged = mergeManifests(names.filter((n) => this.files.has(n)).map((n) => [join(display, n), this.files.get(n)!.loaded]), this.owners);
    this.owners = merged.owners;
    const { services, warnings } = translateCluster(merged.objects, this.o.trustDomain);
    for (const w of [...merged.errors, ...warnings]) this.o.logger.warn('manifest warning', { warning: w });
    this.currentErrors = Object.freeze([...[...this.files.values()].flatMap((f) => f.loaded.errors), ...merged.errors]);
    this.currentRejected = Object.freeze([...[...this.files.values()].flatMap((f) => f.loaded.rejected), ...merged.rejected]);
    const meshedPods = (merged.objects.pods ?? []).filter((p) => p.meshed);
    const podLabels = new Map(meshedPods.map((p) => [`${p.namespace}/${p.name}`, p.labels] as const));
    const podServiceAccounts = new Map(meshedPods.map((p) => [`${p.namespace}/${p.name}`, p.serviceAccount] as const));
    const podUids = new Map(meshedPods.filter((p) => p.uid).map((p) => [`${p.namespace}/${p.name}`, p.uid] as const));
    const podOpaquePorts = new Map([...opaquePortsByPod(merged.objects.services ?? [], merged.objects.slices ?? [])].filter(([k]) => podServiceAccounts.has(k as `${string}/${string}`)));
    const { peerAuthentications, authorizationPolicies, requestAuthentications, telemetries, rateLimitPolicies, externalServices } = merged.objects;
    const byKey = new Map(services.map((s) => [`${s.namespace}/${s.name}`, s] as const));
    const routes = compileRoutes(merged.objects.routes, merged.objects.referenceGrants, (ns, name) => byKey.get(`${ns}/${name}`), this.lastGoodRoutes);
    this.lastGoodRoutes = routes.accepted;
    this.refusedRoutes.note(routes.refused);
    this.reportRouteStatus(routes.statuses);
    this.o.metrics.countFailClosed({ authorizationPolicies, peerAuthentications });
    this.o.store.replaceAll(services, Object.freeze({ peerAuthentications, authorizationPolicies, requestAuthentications, telemetries, rateLimitPolicies, externalServices, podLabels, podServiceAccounts, podUids, podOpaquePorts }), routes.view);
    this.o.metrics.services.set(services.length);
    this.o.metrics.endpoints.set(services.reduce((n, s) => n + s.ports.reduce((m, p) => m + p.endpoints.length, 0), 0));
  }

  /** Current route conditions that are not True, as `kind/namespace/name -> Service: type reason: message` (also logged when they change). */
  routeProblems(): readonly string[] {
    return this.currentRouteProblems;
  }

  private reportRouteStatus(statuses: ReadonlyMap<string, RouteStatus>): void {
    const problems: string[] = [];
    for (const [key, st] of statuses)
      for (const p of st.parents)
        for (const c of p.conditions)
          if (c.status === 'False') problems.push(`${key} -> Service ${String(p.parentRef.namespace ?? st.route.namespace)}/${String(p.parentRef.name)}: ${c.type}=False ${c.reason}: ${c.message}`);
    const before = new Set(this.currentRouteProblems);
    for (const p of problems) if (!before.has(p)) this.o.logger.warn('route condition not met', { problem: p });
    this.currentRouteProblems = Object.freeze(problems);
  }

  /**
   * Once per file version (only re-parsed files get here) and kind: one log line naming the
   * objects and one count, so a Gateway or a misspelt `kind` is not dropped silently.
   */
  private reportIgnored(ignored: readonly IgnoredObject[]): void {
    const byKind = new Map<string, IgnoredObject[]>();
    for (const o of ignored) byKind.set(o.kind, [...(byKind.get(o.kind) ?? []), o]);
    for (const [kind, objs] of byKind) {
      this.o.logger.warn('manifest kind not read by the directory source; ignored', {
        file: objs[0].file, kind: kind || '<none>', apiVersion: objs[0].apiVersion, objects: objs.map((o) => `${o.namespace}/${o.name}`),
      });
      this.o.metrics.ignoredKinds.inc({ source: 'dir', kind: kind || '<none>' });
    }
  }
}
