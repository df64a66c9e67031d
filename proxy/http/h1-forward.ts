import type { Agent } from 'node:http';
import type { Headers } from './headers.js';
import type { ProxyRequest, ProxyResponse } from './exchange.js';
import { H1Pool } from './h1-pool.js';
import type { ConnectionWait, H1Limits } from './h1-pool-options.js';

/**
 * Sends a request as HTTP/1.1 on a kept-alive connection (used to deliver to a local app
 * that speaks HTTP/1, and to unmeshed HTTP/1 endpoints). The connections are those of
 * the H1Pool riding on `agent` (its maxSockets; `agent.destroy()` closes them). The body
 * streams with backpressure; request trailers are forwarded when the body is chunked.
 * `limits` (an unmeshed endpoint's cluster) bound the connections and the requests waiting
 * for one, for at most `waitMs`. `wait` is told when the request waits for a connection (H1Pool.request).
 */
export function forwardH1(agent: Agent, host: string, port: number, req: ProxyRequest, head: Headers, limits?: H1Limits, waitMs?: number, wait?: ConnectionWait): Promise<ProxyResponse> {
  return H1Pool.of(agent).request(host, port, req, head, limits, waitMs, '', '', wait);
}
