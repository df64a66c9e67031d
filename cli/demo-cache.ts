import { createServer, type Server, type Socket } from 'node:net';
import { listen } from '../common/listen.js';

/**
 * The demo's `cache` app: a few Redis commands (PING, ECHO, SET, GET, DEL) over RESP2, the
 * Redis wire protocol (https://redis.io/docs/latest/develop/reference/protocol-spec/), so
 * `redis-cli` works against it through the mesh, and inline commands (`PING\r\n`) so `nc`
 * does too. Opaque TCP to the mesh: the sidecars neither parse nor need to parse it.
 */
export async function startDemoCache(host: string, port: number): Promise<Server> {
  const data = new Map<string, string>();
  const s = createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const parsed = parseCommand(buf);
        if (parsed === null) return; // need more bytes
        if (parsed === 'error') {
          sock.end('-ERR Protocol error\r\n');
          return;
        }
        buf = buf.subarray(parsed.used);
        if (parsed.args.length > 0) reply(sock, parsed.args, data);
      }
    });
  });
  await listen(s, port, host);
  return s;
}

function reply(sock: Socket, args: string[], data: Map<string, string>): void {
  const [cmd, ...rest] = args;
  const bulk = (v: string | undefined) => (v === undefined ? '$-1\r\n' : `$${Buffer.byteLength(v)}\r\n${v}\r\n`);
  switch (cmd.toUpperCase()) {
    case 'PING':
      return void sock.write(rest.length ? bulk(rest[0]) : '+PONG\r\n');
    case 'ECHO':
      return void sock.write(rest.length === 1 ? bulk(rest[0]) : "-ERR wrong number of arguments for 'echo' command\r\n");
    case 'SET':
      if (rest.length !== 2) return void sock.write("-ERR wrong number of arguments for 'set' command\r\n");
      data.set(rest[0], rest[1]);
      return void sock.write('+OK\r\n');
    case 'GET':
      return void sock.write(rest.length === 1 ? bulk(data.get(rest[0])) : "-ERR wrong number of arguments for 'get' command\r\n");
    case 'DEL':
      return void sock.write(`:${rest.filter((k) => data.delete(k)).length}\r\n`);
    default:
      return void sock.write(`-ERR unknown command '${cmd.slice(0, 64)}' (this demo cache knows PING, ECHO, SET, GET, DEL)\r\n`);
  }
}

/** One command from the front of `buf`: a RESP array of bulk strings, or an inline line. null: incomplete. */
function parseCommand(buf: Buffer): { args: string[]; used: number } | null | 'error' {
  const line = (from: number): { text: string; next: number } | null => {
    const end = buf.indexOf('\r\n', from);
    return end < 0 ? null : { text: buf.toString('utf8', from, end), next: end + 2 };
  };
  if (buf.length === 0) return null;
  if (buf[0] !== 0x2a /* '*' */) {
    const end = buf.indexOf('\n');
    if (end < 0) return buf.length > 64 * 1024 ? 'error' : null;
    return { args: buf.toString('utf8', 0, end).trim().split(/\s+/).filter(Boolean), used: end + 1 };
  }
  const head = line(1);
  if (!head) return null;
  const n = Number(head.text);
  if (!Number.isInteger(n) || n < 0 || n > 1024) return 'error';
  const args: string[] = [];
  let at = head.next;
  for (let i = 0; i < n; i++) {
    if (at >= buf.length) return null;
    if (buf[at] !== 0x24 /* '$' */) return 'error';
    const len = line(at + 1);
    if (!len) return null;
    const size = Number(len.text);
    if (!Number.isInteger(size) || size < 0 || size > 1 << 20) return 'error';
    if (buf.length < len.next + size + 2) return null;
    args.push(buf.toString('utf8', len.next, len.next + size));
    at = len.next + size + 2;
  }
  return { args, used: at };
}
