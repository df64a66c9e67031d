import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { FrameType, frameHeader, controlFrame } from '../../proxy/mux/frame.js';
import { MUX_ALPN } from '../../proxy/mux/mux-session.js';
import type { TestPki } from '../helpers/pki.js';

/** A frame as a hand-written peer sees it. */
export interface RawFrame {
  readonly type: number;
  readonly flags: number;
  readonly id: number;
  readonly payload: Buffer;
}

/**
 * A `data` listener that cuts a hand-written peer's byte stream into the multiplexer's
 * frames (a 10-byte header: length, type, flags, stream id; then the payload) and hands
 * each whole frame to `onFrame`; partial frames wait for the next read.
 */
export function frameReader(onFrame: (f: RawFrame) => void): (d: Buffer) => void {
  let pending = Buffer.alloc(0);
  return (d) => {
    pending = Buffer.concat([pending, d]);
    while (pending.length >= 10 && pending.length >= 10 + pending.readUInt32BE(0)) {
      const len = pending.readUInt32BE(0);
      onFrame({ type: pending[4], flags: pending[5], id: pending.readUInt32BE(6), payload: pending.subarray(10, 10 + len) });
      pending = pending.subarray(10 + len);
    }
  };
}

/** A mux peer written by hand (the attacker holds a valid mesh certificate), frames in and out. */
export class RawMux {
  readonly frames: RawFrame[] = [];
  bytesRead = 0;
  closed = false;
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: TLSSocket) {
    const read = frameReader((f) => this.frames.push(f));
    socket.on('data', (d: Buffer) => {
      this.bytesRead += d.length;
      read(d);
      this.wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  /** `alpn`: the multiplexer's version spoken (wren-mux/1 by default; /2 has PING). */
  static open(pki: TestPki, port: number, sa = 'mallory', alpn: string = MUX_ALPN): Promise<RawMux> {
    const m = pki.issue('default', sa);
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ALPNProtocols: [alpn], rejectUnauthorized: false, key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem });
      socket.once('error', reject);
      socket.once('secureConnect', () => (socket.alpnProtocol === alpn ? resolve(new RawMux(socket)) : reject(new Error(`alpn ${String(socket.alpnProtocol)}`))));
    });
  }

  data(id: number, text: string | Buffer, flags = 0): void {
    const body = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
    this.socket.write(Buffer.concat([frameHeader(FrameType.Data, flags, id, body.length), body]));
  }

  control(type: FrameType, id: number, value: number): void {
    this.socket.write(controlFrame(type, id, value));
  }

  /** The DATA payloads received on a stream, as text. */
  text(id: number): string {
    return this.frames.filter((f) => f.type === FrameType.Data && f.id === id).map((f) => f.payload.toString('latin1')).join('');
  }

  /** Resolves when `done()` holds (checked at every read) or after `ms`. */
  async until(done: () => boolean, ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (!done()) {
      if (this.closed || Date.now() >= end) return done();
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(50, end - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return true;
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
