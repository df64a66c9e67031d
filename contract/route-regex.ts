import { setFlagsFromString } from 'node:v8';

/*
 * Route regexes (HTTPRoute/GRPCRoute RegularExpression matches) are written in RE2 syntax
 * (what Envoy's safe_regex, Istio and the Gateway API implementations run) and matched
 * against what callers send, so they must never backtrack exponentially. V8's irregexp is a
 * backtracking engine; its breadth-first engine is linear but slow (~2 µs against ~40 ns for
 * a typical path regex). Both flags below are V8's own: `--enable-experimental-regexp-engine`
 * lets us ask whether a pattern can run on the linear engine (the `l` flag), and
 * `--enable-experimental-regexp-engine-on-excessive-backtracks` re-runs a match on it once
 * irregexp has backtracked 50,000 times. So every route regex is checked to be
 * linear-capable when its route is parsed, runs at irregexp speed, and a hostile input costs
 * a fraction of a millisecond instead of freezing the event loop. The flags are process-wide
 * (workers included) and read when a regex is compiled, long after this module loads.
 */
setFlagsFromString('--enable-experimental-regexp-engine');
setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');

const POSIX: Readonly<Record<string, string>> = {
  alnum: '0-9A-Za-z', alpha: 'A-Za-z', ascii: '\\x00-\\x7f', blank: '\\t ', cntrl: '\\x00-\\x1f\\x7f', digit: '0-9',
  graph: '!-~', lower: 'a-z', print: ' -~', punct: '!-\\/:-@\\[-`{-~', space: '\\t\\n\\v\\f\\r ', upper: 'A-Z',
  word: '0-9A-Za-z_', xdigit: '0-9A-Fa-f',
};
const escapeLiteral = (s: string): string => s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');

/**
 * RE2 syntax (github.com/google/re2/wiki/Syntax) as a JavaScript source with the same
 * meaning, or an Error saying what is not supported. Without this, RE2 that V8 also parses
 * would silently mean something else: `[[:digit:]]` a class of `[:digt` then `]`, `\Q..\E`
 * the letters Q and E, `\pL` the letter p, `\z` the letter z.
 */
export function re2ToJs(re2: string): string {
  let out = '';
  let inClass = false;
  for (let i = 0; i < re2.length; i++) {
    const c = re2[i];
    if (c === '\\') {
      const n = re2[i + 1];
      if (n === undefined) throw new Error('trailing backslash');
      if (n === 'Q') {
        const end = re2.indexOf('\\E', i + 2);
        const lit = re2.slice(i + 2, end < 0 ? re2.length : end);
        out += inClass ? lit.replace(/[\\\]^-]/g, '\\$&') : escapeLiteral(lit);
        i = end < 0 ? re2.length : end + 1;
        continue;
      }
      if (n === 'p' || n === 'P') throw new Error(`\\${n} (Unicode classes) is not supported`);
      if (n === 'C') throw new Error('\\C (any byte) is not supported');
      if (n === 'c') throw new Error('\\c is not RE2 syntax');
      if (!inClass && n === 'A') {
        out += '^';
        i++;
        continue;
      }
      if (!inClass && n === 'z') {
        out += '$';
        i++;
        continue;
      }
      if (n === 'x' && re2[i + 2] === '{') {
        const m = /^\{([0-9A-Fa-f]{1,6})\}/.exec(re2.slice(i + 2));
        if (!m || parseInt(m[1], 16) > 0xffff) throw new Error('\\x{...} must be at most FFFF');
        out += `\\u${m[1].padStart(4, '0')}`;
        i += 1 + m[0].length;
        continue;
      }
      out += c + n;
      i++;
      continue;
    }
    if (inClass) {
      if (c === '[' && re2[i + 1] === ':') {
        const m = /^\[:(\^?)([a-z]+):\]/.exec(re2.slice(i));
        if (m) {
          if (m[1] || !Object.hasOwn(POSIX, m[2])) throw new Error(`[:${m[1]}${m[2]}:] is not supported`);
          out += POSIX[m[2]];
          i += m[0].length - 1;
          continue;
        }
      }
      if (c === ']') inClass = false;
      out += c === '[' ? '\\[' : c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      // A leading ']' (or '^]') is a literal in RE2, as in POSIX; JavaScript would end the class.
      if (re2[i + 1] === '^') {
        out += '^';
        i++;
      }
      if (re2[i + 1] === ']') {
        out += '\\]';
        i++;
      }
      continue;
    }
    if (c === '(' && re2[i + 1] === '?') {
      if (re2.startsWith('(?P<', i)) {
        out += '(?<';
        i += 3;
        continue;
      }
      // (?: (?< and lookarounds (?= (?! pass on; lookarounds then fail the linear-time check.
      if (!':<=!'.includes(re2[i + 2] ?? ')')) throw new Error('flag groups such as (?i) are not supported');
    }
    out += c;
  }
  if (inClass) throw new Error('missing ]');
  return out;
}

const COMPILED = new Map<string, RegExp>();
const COMPILED_MAX = 4096;

/**
 * The one way a route regex is compiled, full match (as Envoy's safe_regex and the Gateway
 * API require): translated from RE2, checked to be linear-capable, run by irregexp with the
 * linear fallback. Throws an Error naming what is wrong.
 */
export function compileRouteRegex(re2: string): RegExp {
  // A route's regex is checked where its config is parsed and compiled again where its
  // matcher is built (parse-routes.ts, route-matcher.ts): the second is this look-up. A
  // RegExp without the g or y flag keeps no state between matches, so routes can share one.
  const known = COMPILED.get(re2);
  if (known !== undefined) return known;
  const source = `^(?:${re2ToJs(re2)})$`;
  try {
    // 'l' (linear) exists only with the V8 flag set above; eslint does not know it.
    // eslint-disable-next-line no-invalid-regexp
    new RegExp(source, 'l');
  } catch (e) {
    const msg = (e as Error).message;
    if (/linear time/.test(msg))
      throw new Error('cannot be matched in linear time: lookaround, backreferences and counted repetitions above 16 (x{17,}) are not supported', { cause: e });
    throw e;
  }
  const re = new RegExp(source);
  // Bounded: a control plane that saw many route revisions does not keep every regex it ever compiled.
  if (COMPILED.size >= COMPILED_MAX) COMPILED.clear();
  COMPILED.set(re2, re);
  return re;
}
