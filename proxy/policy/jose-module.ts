import type * as Jose from 'jose';

type JoseModule = typeof Jose;

let loaded: JoseModule | undefined;
let loading: Promise<JoseModule> | undefined;

/**
 * jose, imported the first time a JWT rule is compiled (a RequestAuthentication selects
 * the workload, at start or pushed later) instead of in every sidecar: most have no JWT
 * rule, and the module costs each about 4 MB of resident memory (docs/benchmarks.md,
 * "Resident memory"). The import starts when a rule is compiled, so it never blocks the
 * policy swap; a request that needs a verification before it has finished waits for it
 * (JwtAuthenticator): a JWT rule is never applied without its verifier. A failed import
 * is tried again by the next caller.
 */
export function loadJose(): Promise<JoseModule> {
  loading ??= import('jose').then(
    (m) => (loaded = m),
    (e: unknown) => {
      loading = undefined;
      throw e;
    },
  );
  return loading;
}

/** jose when loaded (no promise, no microtask), else undefined. */
export function joseIfLoaded(): JoseModule | undefined {
  return loaded;
}
