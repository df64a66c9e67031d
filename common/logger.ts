/**
 * Structured JSON logs, one object per line. Errors carry their stable `code`.
 * Fields whose names look like secrets are redacted so keys and tokens never reach logs.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET = /(key|token|secret|password|authorization|cookie)/i;

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
  level: Level;
}

export function isLevel(s: string): s is Level {
  return s in order;
}

export type Sink = (line: string) => void;

/**
 * Unwritten bytes the default sink lets stderr hold. Node writes to a pipe asynchronously
 * and keeps what the reader has not taken; a log reader that stalls (a full pipe, a stuck
 * log driver) would otherwise make a process that logs per failed request grow without
 * bound. Past it lines are dropped and counted (the access log does the same with stdout).
 */
const MAX_UNWRITTEN_BYTES = 4 << 20;

/** Lines the default sink dropped because stderr was backed up (`wren_log_lines_dropped_total`). */
export const droppedLogLines = { count: 0 };

const stderrSink: Sink = (line) => {
  if (process.stderr.writableLength > MAX_UNWRITTEN_BYTES) {
    droppedLogLines.count++;
    return;
  }
  process.stderr.write(line + '\n');
};

export function createLogger(opts: { level?: Level; base?: Record<string, unknown>; sink?: Sink; now?: () => Date } = {}): Logger {
  const state = { level: opts.level ?? 'info' };
  const sink: Sink = opts.sink ?? stderrSink;
  const now = opts.now ?? (() => new Date());
  const make = (base: Record<string, unknown>): Logger => {
    const emit = (level: Level, msg: string, fields?: Record<string, unknown>): void => {
      if (order[level] < order[state.level]) return;
      const rec: Record<string, unknown> = { ts: now().toISOString(), level, msg, ...base };
      if (fields) for (const [k, v] of Object.entries(fields)) rec[k] = SECRET.test(k) ? '[redacted]' : serialize(v);
      sink(JSON.stringify(rec));
    };
    return {
      debug: (m, f) => emit('debug', m, f),
      info: (m, f) => emit('info', m, f),
      warn: (m, f) => emit('warn', m, f),
      error: (m, f) => emit('error', m, f),
      child: (f) => make({ ...base, ...f }),
      get level() {
        return state.level;
      },
      set level(l: Level) {
        state.level = l;
      },
    };
  };
  return make(opts.base ?? {});
}

function serialize(v: unknown): unknown {
  if (v instanceof Error) {
    const code = (v as { code?: unknown }).code;
    return code === undefined ? { message: v.message } : { message: v.message, code };
  }
  return v;
}

/** A logger that drops everything; for tests that do not look at logs. */
export const silentLogger: Logger = createLogger({ sink: () => undefined, level: 'error' });
