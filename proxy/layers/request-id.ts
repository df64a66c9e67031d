import { randomUUID } from 'node:crypto';
import type { HttpLayer } from '../http/exchange.js';

/** Adds `x-request-id` when the client sent none (as Envoy does), so one id follows a request across hops. */
export const requestId =
  (newId: () => string = randomUUID): HttpLayer =>
  (inner) =>
  (req) => {
    if (!req.headers['x-request-id']) req.headers['x-request-id'] = newId();
    return inner(req);
  };
