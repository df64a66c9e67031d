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

/** A mux peer written by hand (the attacker holds a valid mesh certificate), frames in and out. */
export class RawMux {
  readonly frames: RawFrame[] = [];
  bytesRead = 0;
  closed = false;
  private pending = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: TLSSocket) {
    socket.on('data', (d: Buffer) => {
      this.bytesRead += d.length;
      this.pending = Buffer.concat([this.pending, d]);
      while (this.pending.length >= 10 && this.pending.length >= 10 + this.pending.readUInt32BE(0)) {
        const len = this.pending.readUInt32BE(0);
        this.frames.push({ type: this.pending[4], flags: this.pending[5], id: this.pending.readUInt32BE(6), payload: this.pending.subarray(10, 10 + len) });
        this.pending = this.pending.subarray(10 + len);
      }
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
