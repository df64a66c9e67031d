/**
 * Parse-don't-validate for config: raw YAML/JSON is turned once, at the edge, into
 * readonly typed objects with defaults applied. Every error names the field path
 * (`services[1].ports[0].port: expected an integer in 1..65535, got "http"`).
 */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(
    readonly path: string,
    readonly problem: string,
    readonly source?: string,
  ) {
    super(`${source ? source + ': ' : ''}${path || '<root>'}: ${problem}`);
    this.name = 'ConfigError';
  }
}

export type Parser<T> = (raw: unknown, path: string) => T;

/**
 * Where a JSON.parse failure is, without what: V8's message quotes the text around the
 * error ("... is not valid JSON"), and the text may hold a secret (a key pasted into a
 * JWKS, a probe's header), which would then reach logs and the control plane's
 * /debug/rejected.
 */
export function jsonSyntaxProblem(e: unknown): string {
  const at = /position (\d+)/.exec(e instanceof Error ? e.message : '')?.[1];
  return `invalid JSON${at !== undefined ? ` at position ${at}` : ''}`;
}

const show = (v: unknown): string => {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + '...' : s;
};
const join = (path: string, key: string | number): string =>
  typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key;

export const fail = (path: string, problem: string): never => {
  throw new ConfigError(path, problem);
};

export function str(opts: { default?: string; pattern?: RegExp; oneOf?: readonly string[] } = {}): Parser<string> {
  return (raw, path) => {
    if (raw === undefined && opts.default !== undefined) return opts.default;
    if (typeof raw !== 'string') return fail(path, `expected a string, got ${show(raw)}`);
    if (opts.oneOf && !opts.oneOf.includes(raw)) return fail(path, `expected one of ${opts.oneOf.join(', ')}, got ${show(raw)}`);
    if (opts.pattern && !opts.pattern.test(raw)) return fail(path, `expected to match ${opts.pattern}, got ${show(raw)}`);
    return raw;
  };
}

export function literal<T extends string>(values: readonly T[], def?: T): Parser<T> {
  return str({ oneOf: values, default: def }) as Parser<T>;
}

export function num(opts: { default?: number; min?: number; max?: number; int?: boolean } = {}): Parser<number> {
  return (raw, path) => {
    if (raw === undefined && opts.default !== undefined) return opts.default;
    const n = raw;
    const range = `${opts.min ?? '-inf'}..${opts.max ?? 'inf'}`;
    if (typeof n !== 'number' || Number.isNaN(n)) return fail(path, `expected a number, got ${show(raw)}`);
    if (opts.int && !Number.isInteger(n)) return fail(path, `expected an integer in ${range}, got ${show(raw)}`);
    if ((opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max))
      return fail(path, `expected a number in ${range}, got ${show(raw)}`);
    return n;
  };
}

export const port = (def?: number): Parser<number> => num({ int: true, min: 0, max: 65535, default: def });

export function bool(def?: boolean): Parser<boolean> {
  return (raw, path) => {
    if (raw === undefined && def !== undefined) return def;
    if (typeof raw !== 'boolean') return fail(path, `expected true or false, got ${show(raw)}`);
    return raw;
  };
}

/** Durations as numbers of milliseconds or strings like "250ms", "1s", "2m", "1h". */
export function duration(def?: number): Parser<number> {
  return (raw, path) => {
    if (raw === undefined && def !== undefined) return def;
    if (typeof raw === 'number' && raw >= 0) return raw;
    if (typeof raw === 'string') {
      const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(raw.trim());
      if (m) return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms'];
    }
    return fail(path, `expected a duration like "250ms", "1s", "5m" or milliseconds, got ${show(raw)}`);
  };
}

export function optional<T>(p: Parser<T>): Parser<T | undefined> {
  return (raw, path) => (raw === undefined || raw === null ? undefined : p(raw, path));
}

export function withDefault<T>(p: Parser<T>, def: T): Parser<T> {
  return (raw, path) => (raw === undefined || raw === null ? def : p(raw, path));
}

export function arr<T>(item: Parser<T>, opts: { default?: readonly T[]; min?: number; max?: number } = {}): Parser<readonly T[]> {
  return (raw, path) => {
    if (raw === undefined && opts.default !== undefined) return opts.default;
    if (!Array.isArray(raw)) return fail(path, `expected a list, got ${show(raw)}`);
    if (opts.min !== undefined && raw.length < opts.min) return fail(path, `expected at least ${opts.min} item(s)`);
    if (opts.max !== undefined && raw.length > opts.max) return fail(path, `expected at most ${opts.max} items, got ${raw.length}`);
    return Object.freeze(raw.map((v, i) => item(v, join(path, i))));
  };
}

type Shape = Record<string, Parser<unknown>>;
type Out<S extends Shape> = { readonly [K in keyof S]: ReturnType<S[K]> };

/** An object with known fields; unknown fields are an error (typos must not pass silently). */
export function obj<S extends Shape>(shape: S, opts: { allowUnknown?: boolean } = {}): Parser<Out<S>> {
  return (raw, path) => {
    const input = raw === undefined ? {} : raw;
    if (typeof input !== 'object' || input === null || Array.isArray(input))
      return fail(path, `expected an object, got ${show(raw)}`);
    const rec = input as Record<string, unknown>;
    if (!opts.allowUnknown)
      // Own keys only: `k in shape` found Object.prototype's members, so a `constructor`,
      // `toString` or `__proto__` field passed as known and was then silently ignored.
      for (const k of Object.keys(rec)) if (!Object.hasOwn(shape, k)) fail(join(path, k), `unknown field (expected one of ${Object.keys(shape).join(', ')})`);
    const out: Record<string, unknown> = {};
    for (const [k, p] of Object.entries(shape)) out[k] = p(rec[k], join(path, k));
    return Object.freeze(out) as Out<S>;
  };
}

export function record<T>(value: Parser<T>): Parser<Readonly<Record<string, T>>> {
  return (raw, path) => {
    if (raw === undefined) return Object.freeze({});
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail(path, `expected a map, got ${show(raw)}`);
    const out: Record<string, T> = {};
    for (const [k, v] of Object.entries(raw)) {
      const parsed = value(v, join(path, k));
      // A `__proto__` key (JSON and YAML make it an own key) would hit the prototype setter:
      // dropped, or the whole map's prototype replaced. An own entry like any other.
      if (k === '__proto__') Object.defineProperty(out, k, { value: parsed, writable: true, enumerable: true, configurable: true });
      else out[k] = parsed;
    }
    return Object.freeze(out);
  };
}

export function map<A, B>(p: Parser<A>, f: (a: A, path: string) => B): Parser<B> {
  return (raw, path) => f(p(raw, path), path);
}

/** Run a parser on a whole document, tagging errors with where it came from. */
export function parseWith<T>(p: Parser<T>, raw: unknown, source?: string): T {
  try {
    return p(raw, '');
  } catch (e) {
    if (e instanceof ConfigError && source) throw new ConfigError(e.path, e.problem, source);
    throw e;
  }
}
