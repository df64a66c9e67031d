/**
 * Byte classes of RFC 9110/9112 as 256-entry tables, so the parser checks each byte with
 * one array load instead of a regular expression.
 */

function table(pred: (c: number) => boolean): Uint8Array {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = pred(c) ? 1 : 0;
  return t;
}

/** Every character of the string `s` is in the byte class `t` (none above 0xff is in any). */
export function allIn(s: string, t: Uint8Array): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || t[c] !== 1) return false;
  }
  return true;
}

const TCHAR_PUNCT = "!#$%&'*+-.^_`|~";
const isAlnum = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);

/** tchar (RFC 9110 section 5.6.2): field names, methods, chunk-extension names. */
export const TOKEN = table((c) => isAlnum(c) || TCHAR_PUNCT.includes(String.fromCharCode(c)));

/** field-vchar / SP / HTAB (RFC 9110 section 5.5): no CTL, no NUL, no CR, no LF, no DEL. */
export const FIELD_VALUE = table((c) => c === 0x09 || (c >= 0x20 && c !== 0x7f));

/**
 * Request-target bytes (RFC 9112 section 3.2, RFC 3986): visible ASCII; obs-text (0x80-0xff)
 * is let through as node's parser does, since some clients send raw UTF-8 paths.
 */
export const TARGET = table((c) => c > 0x20 && c !== 0x7f);

/**
 * Host field value (RFC 9110 section 7.2, RFC 3986 host [ ":" port ]): unreserved,
 * sub-delims, ":", "[", "]" and "%" (IPv6 literals, pct-encoding); nothing else, so no
 * userinfo ("@"), spaces or paths reach routing.
 */
export const HOST = table((c) => isAlnum(c) || "-._~!$&'()*+,;=:[]%".includes(String.fromCharCode(c)));

/** qdtext (RFC 9110 section 5.6.4) inside a quoted chunk-extension value. */
export const QDTEXT = table((c) => c === 0x09 || c === 0x20 || c === 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) || c >= 0x80);

/** Hex digit value, or 255. */
export const HEX = (() => {
  const t = new Uint8Array(256).fill(255);
  for (let i = 0; i < 10; i++) t[0x30 + i] = i;
  for (let i = 0; i < 6; i++) t[0x41 + i] = t[0x61 + i] = 10 + i;
  return t;
})();

export const CR = 0x0d;
export const LF = 0x0a;
export const SP = 0x20;
export const HTAB = 0x09;
