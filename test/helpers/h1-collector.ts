import { H1Parser, type H1Handler } from '../../proxy/h1/parser.js';
import type { H1Head } from '../../proxy/h1/head.js';
import type { H1Error } from '../../proxy/h1/h1-error.js';
import type { H1Limits } from '../../proxy/h1/limits.js';

/** One message the parser completed (or the one in progress when it stopped). */
export interface Parsed {
  head: H1Head;
  body: string;
  trailers: string[];
  /** Body pieces as handed to onBody, before copying (to check zero-copy views). */
  views: Buffer[];
}

/** An H1Handler that records everything, as the tests of the codec read it. */
export class Collector implements H1Handler {
  readonly messages: Parsed[] = [];
  readonly interim: H1Head[] = [];
  current: Parsed | null = null;
  error: H1Error | null = null;
  upgrade: string | null = null;
  /** Order of callbacks, e.g. ['head', 'body', 'end']. */
  readonly events: string[] = [];
  onEndHook: (() => void) | null = null;

  onHead(head: H1Head): void {
    this.events.push('head');
    if (head.status >= 100 && head.status < 200 && head.status !== 101) this.interim.push(head);
    else this.current = { head, body: '', trailers: [], views: [] };
  }
  onBody(chunk: Buffer): void {
    this.events.push('body');
    if (!this.current) throw new Error('body without a head');
    this.current.body += chunk.toString('latin1');
    this.current.views.push(chunk);
  }
  onTrailers(fields: string[]): void {
    this.events.push('trailers');
    this.current!.trailers = fields;
  }
  onEnd(): void {
    this.events.push('end');
    if (!this.current) throw new Error('end without a head');
    this.messages.push(this.current);
    this.current = null;
    this.onEndHook?.();
  }
  onUpgrade(rest: Buffer): void {
    this.events.push('upgrade');
    this.upgrade = (this.upgrade ?? '') + rest.toString('latin1');
  }
  onError(err: H1Error): void {
    this.events.push('error');
    if (this.error) throw new Error('a second error was reported');
    this.error = err;
  }
}

export interface ParseOptions {
  responses?: boolean;
  /** Feed this many bytes at a time (default: all at once). */
  step?: number;
  limits?: H1Limits;
  /** Call finish() after the last byte (the peer closed). */
  finish?: boolean;
  /** Response mode: the request method. */
  method?: string;
}

/** Parses `wire` (latin1) with a fresh parser and returns what it reported. */
export function parse(wire: string | Buffer, opts: ParseOptions = {}): Collector & { parser: H1Parser } {
  const c = new Collector() as Collector & { parser: H1Parser };
  const p = (c.parser = new H1Parser(c, opts.responses ?? false, opts.limits));
  if (opts.method) p.setRequestMethod(opts.method);
  const buf = typeof wire === 'string' ? Buffer.from(wire, 'latin1') : wire;
  const step = opts.step ?? Math.max(buf.length, 1);
  for (let i = 0; i < buf.length; i += step) {
    const n = p.execute(buf.subarray(i, i + step));
    if (n !== Math.min(step, buf.length - i)) throw new Error('the parser paused without being asked to');
  }
  if (opts.finish) p.finish();
  return c;
}
