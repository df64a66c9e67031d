import { Writable } from 'node:stream';

/** A sink that keeps what a proxy writes to it (its access log), line by line. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  private partial = '';

  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    const parts = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = parts.pop() ?? '';
    this.lines.push(...parts);
    done();
  }

  /** Every line parsed as JSON (a line that is not JSON fails the test here). */
  entries(): Record<string, unknown>[] {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** The first line matching `pred`, waiting up to `ms` for it to be written. */
  async find(pred: (e: Record<string, unknown>) => boolean, ms = 3000): Promise<Record<string, unknown>> {
    const end = Date.now() + ms;
    for (;;) {
      const hit = this.entries().find(pred);
      if (hit) return hit;
      if (Date.now() > end) throw new Error(`no access log line matched within ${ms} ms; lines:\n${this.lines.join('\n')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
