import { createServer, type Socket } from 'node:net';
import { listenOnLoopback } from './fake-app.js';

/** A TCP app on loopback port 0 that echoes, and records per connection what it got and whether it closed. */
export interface RecordingTcpApp {
  readonly port: number;
  readonly conns: { data: string; closed: boolean }[];
  close(): Promise<void>;
}

/** Echoes every byte back; `greeting`, when given, is written first on each connection (a server-speaks-first protocol). */
export async function recordingTcpApp(greeting?: string): Promise<RecordingTcpApp> {
  const conns: RecordingTcpApp['conns'] = [];
  const srv = createServer((s: Socket) => {
    const c = { data: '', closed: false };
    conns.push(c);
    s.on('data', (d: Buffer) => (c.data += d.toString('latin1')));
    s.on('close', () => (c.closed = true));
    s.on('error', () => undefined);
    if (greeting !== undefined) s.write(greeting);
    s.pipe(s);
  });
  return { ...(await listenOnLoopback(srv)), conns };
}
