/**
 * Retry-After (RFC 9110 section 10.2.3) read strictly, for the CLI (cli/retry-after.ts)
 * and the dashboard in the browser alike: this module imports nothing and uses nothing
 * of Node's, so the control plane's admin port serves its compiled JavaScript to the page
 * as /dashboard/retry-after.js (control-plane/dashboard/dashboard-assets.ts), and both
 * read a header the same way.
 *
 * The three forms of an HTTP-date a recipient must accept (RFC 9110 section 5.6.7):
 * IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), the obsolete RFC 850 form ("Sunday,
 * 06-Nov-94 08:49:37 GMT") and asctime ("Sun Nov  6 08:49:37 1994", which is UTC though it
 * says no zone). Matched before Date.parse, which takes almost anything: "x 5" is a date in
 * 2001 to it, a parenthesised comment of any characters is skipped, and an asctime date is
 * read in the local time zone (hours off, east or west of UTC: a browser's zone is its
 * user's).
 */
const DAY = '(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)';
const MONTH = '(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)';
const IMF_FIXDATE = new RegExp(`^${DAY}, \\d{2} ${MONTH} \\d{4} \\d{2}:\\d{2}:\\d{2} GMT$`);
const RFC850_DATE = new RegExp(`^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), \\d{2}-${MONTH}-\\d{2} \\d{2}:\\d{2}:\\d{2} GMT$`);
const ASCTIME_DATE = new RegExp(`^${DAY} ${MONTH} [ \\d]\\d \\d{2}:\\d{2}:\\d{2} \\d{4}$`);

/**
 * The wait a Retry-After value asks for, in ms: delay-seconds (a non-negative integer) or
 * an HTTP-date (RFC 9110 section 5.6.7, the three forms above) less `nowMs`, never below 0.
 * undefined when the value is neither (a malformed header is ignored, as RFC 9110 section
 * 10.2.3 lets a recipient do): the 429/503 is then the answer.
 */
export function retryAfterMs(value: string | undefined | null, nowMs: number): number | undefined {
  if (value === undefined || value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = IMF_FIXDATE.test(v) || RFC850_DATE.test(v) ? Date.parse(v) : ASCTIME_DATE.test(v) ? Date.parse(`${v} GMT`) : NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}
