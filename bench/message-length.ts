/** The bench probes' framing (bench/bytes-pair.ts, bench/bytes-mux-pair.ts): just enough HTTP/1.1 to forward whole messages. */
const CRLF2 = Buffer.from('\r\n\r\n');

/** Bytes of a whole message at the start of `buf` (head plus Content-Length body), or -1 if incomplete. */
export function messageLength(buf: Buffer): number {
  const end = buf.indexOf(CRLF2);
  if (end < 0) return -1;
  const head = buf.toString('latin1', 0, end).toLowerCase();
  const i = head.indexOf('\r\ncontent-length:');
  const bodyLen = i < 0 ? 0 : parseInt(head.slice(i + 17), 10);
  const total = end + 4 + bodyLen;
  return buf.length >= total ? total : -1;
}
