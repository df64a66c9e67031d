import type { BodyStream, ProxyResponse } from './exchange.js';
import type { Headers } from './headers.js';

/** Whatever receives a response's trailers after the response resolved (an HTTP/2 call, a frame-level client stream). */
export interface TrailersSource {
  readonly trailers: Headers | undefined;
}

/**
 * A response whose trailers arrive after it: `trailers` is an own property (a layer's
 * `{ ...res }` copy keeps it) reading through `source` (copied too), so a copy still sees
 * trailers that arrive later. One shared function, no closure per response.
 */
export class StreamedResponse implements ProxyResponse {
  readonly trailers = trailersOf;
  constructor(
    readonly status: number,
    readonly headers: Headers,
    readonly body: BodyStream | null,
    readonly source: TrailersSource,
  ) {}
}

function trailersOf(this: { readonly source?: TrailersSource }): Headers | undefined {
  return this.source?.trailers;
}
