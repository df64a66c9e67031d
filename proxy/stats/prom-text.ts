/** One sample of the Prometheus text exposition format: `name{label="value",...} value`. */
export interface PromSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/**
 * Reads the samples of the metrics named in `names` (a histogram's `_bucket`, `_sum`,
 * `_count` lines count as their own names) from the text exposition format
 * (prometheus.io/docs/instrumenting/exposition_formats: label values escape `\\`, `\"`
 * and `\n`). The stats report reads the proxy's own /metrics text this way, because with
 * `concurrency` > 1 only that text (the worker pool's sum) has every thread's counts.
 */
export function parsePromText(text: string, names: ReadonlySet<string>): PromSample[] {
  const out: PromSample[] = [];
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = text.length;
    const line = text.slice(pos, end);
    pos = end + 1;
    if (line === '' || line.charCodeAt(0) === 35 /* # */) continue;
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    const nameEnd = brace >= 0 && (space < 0 || brace < space) ? brace : space;
    if (nameEnd <= 0) continue;
    const name = line.slice(0, nameEnd);
    if (!names.has(name)) continue;
    const labels: Record<string, string> = {};
    let i = nameEnd;
    if (line.charCodeAt(i) === 123 /* { */) {
      i++;
      while (i < line.length && line[i] !== '}') {
        const eq = line.indexOf('=', i);
        if (eq < 0 || line[eq + 1] !== '"') return malformed(line);
        const key = line.slice(i, eq).trim();
        let j = eq + 2;
        let value = '';
        for (; j < line.length && line[j] !== '"'; j++) {
          if (line[j] === '\\' && j + 1 < line.length) {
            j++;
            value += line[j] === 'n' ? '\n' : line[j];
          } else value += line[j];
        }
        if (j >= line.length) return malformed(line);
        labels[key] = value;
        i = j + 1;
        if (line[i] === ',') i++;
      }
      i++;
    }
    const value = Number(line.slice(i).trim().split(' ')[0]);
    if (Number.isNaN(value) && !/NaN/.test(line.slice(i))) return malformed(line);
    out.push({ name, labels, value });
  }
  return out;
}

function malformed(line: string): never {
  throw new Error(`malformed metrics line: ${line.slice(0, 200)}`);
}
