import { Duplex } from 'node:stream';

/**
 * A socket-like Duplex over an HTTP/2 stream, for handing a CONNECT stream's bytes to
 * the HTTP/1.1 server (H1Server.serve) or node:http2 as a connection. The HTTP/1.1 server
 * writes response heads as latin1 strings, sometimes corked, and an Http2Stream's writev of string chunks sends
 * corrupted bytes (the temporary buffers are not kept alive until HTTP/2 sends them;
 * seen on node 20). This Duplex decodes strings to Buffers (decodeStrings, the default)
 * before they reach the stream. Backpressure is kept both ways; end and destroy are
 * propagated; setTimeout/'timeout' are forwarded for the server's keep-alive timer.
 * remoteAddress/remotePort are the peer's (the session's socket), so requests carry the
 * caller's address (x-forwarded-for, authorization by ipBlocks) as on the session itself.
 */
export class StreamSocket extends Duplex {
  constructor(
    private readonly inner: Duplex & { setTimeout?(ms: number, cb?: () => void): unknown },
    readonly remoteAddress: string | undefined,
    readonly remotePort: number | undefined,
  ) {
    super({ allowHalfOpen: true });
    inner.on('data', (d: Buffer) => {
      if (!this.push(d)) inner.pause();
    });
    inner.once('end', () => this.push(null));
    inner.once('close', () => this.destroy());
    inner.on('error', (e) => this.destroy(e));
    inner.on('timeout', () => this.emit('timeout'));
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.inner.write(chunk, cb);
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.inner.end(cb);
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.inner.destroy();
    cb(err);
  }

  setTimeout(ms: number, cb?: () => void): this {
    this.inner.setTimeout?.(ms);
    if (cb) this.once('timeout', cb);
    return this;
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }
}
