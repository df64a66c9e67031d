/**
 * Control characters (C0, DEL, C1) and the bidirectional overrides and isolates, which a
 * terminal acts on instead of showing: ESC starts sequences that set the window title,
 * clear the screen or write the clipboard (OSC 52), and U+202E reverses what follows.
 */
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

const escape = (c: string): string => {
  const n = c.charCodeAt(0);
  return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
};

/**
 * `s` with every character a terminal would act on written as an escape (`\x1b`,
 * `\u202e`). What a proxy reports (its version, a NACK's detail, the services and
 * workloads of its stats) is the proxy's own claim, and a compromised workload's proxy can
 * claim anything: the CLI prints such text only through this (kubectl escapes likewise
 * since CVE-2021-25743), and the control plane stores it so.
 */
export function printable(s: string): string {
  return s.replace(UNPRINTABLE, escape);
}

/** What JSON.stringify leaves raw (it escapes C0 only): DEL, C1 and the bidi controls. */
const JSON_UNPRINTABLE = /[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/**
 * `JSON.stringify(v, null, space)` with every character a terminal would act on written as
 * a JSON `\uXXXX` escape: the same JSON to a parser (RFC 8259 section 7), nothing for a
 * terminal to act on. JSON.stringify escapes C0 but writes DEL, C1 (U+009B is CSI on
 * terminals that take 8-bit controls) and U+202E as they are, so `-o json` of what a proxy or
 * a manifest supplied goes through this, as the table output goes through printable().
 */
export function printableJson(v: unknown, space?: number): string {
  return JSON.stringify(v, null, space).replace(JSON_UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
