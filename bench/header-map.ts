/**
 * Header-map micro-benchmark (issue 12): `npm run bench -- header-map`. A request's header
 * map is built by keyed stores (`fieldsToHeaders`, proxy/h1/head.ts) and copied with
 * `for in` (the app's copy, deliver-to-app.ts); V8 keeps an object built that way in fast
 * mode only up to a soft limit of fields, after which it is a dictionary and every read and
 * walk of it takes the slow path. Per field count: whether the map is in fast mode
 * (`%HasFastProperties`) and ns per build + copy + a few reads, median of 5 runs.
 * One run on a shared machine: compare the field counts with each other, not across runs.
 */
import { setFlagsFromString } from 'node:v8';
import { fieldsToHeaders } from '../proxy/h1/head.js';
import { median } from './interleave.js';

/** A browser's request as it reaches the inbound (its fields and the mesh's), in order. */
const NAMES = [
  'accept', 'accept-encoding', 'accept-language', 'cache-control', 'cookie', 'dnt', 'pragma', 'referer', 'sec-ch-ua', 'sec-ch-ua-mobile', 'sec-ch-ua-platform', 'sec-fetch-dest',
  'sec-fetch-mode', 'sec-fetch-site', 'sec-fetch-user', 'upgrade-insecure-requests', 'user-agent', 'x-request-id', 'x-forwarded-for', 'x-forwarded-proto', 'wren-orig-proto',
  'wren-target-port', 'traceparent', 'x-forwarded-client-cert',
];
const COUNTS = [8, 12, 16, 18, 19, 20, 22, 24];
const ITERATIONS = 100_000;

function copy(h: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k in h) out[k] = h[k];
  return out;
}

function nsPerMap(fields: string[]): number {
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < ITERATIONS; r++) {
    const h = fieldsToHeaders(fields);
    const out = copy(h);
    sink += (h['user-agent'] === undefined ? 0 : 1) + (h['content-type'] === undefined ? 1 : 0) + (out['accept'] === undefined ? 0 : 1);
  }
  const ns = Number(process.hrtime.bigint() - t0) / ITERATIONS;
  return sink >= 0 ? ns : NaN;
}

export function runHeaderMapBench(): Record<string, unknown> {
  setFlagsFromString('--allow-natives-syntax');
  const fast = new Function('o', 'return %HasFastProperties(o)') as (o: object) => boolean;
  console.log(`\n== header map: fieldsToHeaders + a for-in copy + 3 reads, ns per request (median of 5 x ${ITERATIONS}) ==`);
  console.log('| fields | fast mode | ns |\n|---:|---|---:|');
  const rows: { fields: number; fast: boolean; ns: number }[] = [];
  for (const n of COUNTS) {
    const fields = NAMES.slice(0, n).flatMap((k, i) => [k, `value-${i}`]);
    nsPerMap(fields);
    const ns = median(Array.from({ length: 5 }, () => nsPerMap(fields)));
    const row = { fields: n, fast: fast(fieldsToHeaders(fields)), ns: Math.round(ns) };
    rows.push(row);
    console.log(`| ${row.fields} | ${row.fast ? 'yes' : 'no (dictionary)'} | ${row.ns} |`);
  }
  return { rows };
}
