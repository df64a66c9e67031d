import { randomBytes } from 'node:crypto';
import type { HttpLayer } from '../http/exchange.js';

/**
 * Request ids shaped like a random (version 4) UUID, as Envoy's x-request-id, but made
 * from 74 random bits drawn once plus a 48-bit counter starting at a random value:
 * unique within the process by construction and across processes by the random part,
 * without a crypto draw and a UUID serialisation per request.
 */
export function requestIdGenerator(seed: Buffer = randomBytes(16)): () => string {
  const hex = seed.toString('hex');
  // xxxxxxxx-xxxx-4xxx-yxxx-: y carries the RFC 9562 variant bits (10xx).
  const variant = ((parseInt(hex[16], 16) & 0x3) | 0x8).toString(16);
  const prefix = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-`;
  let counter = seed.readUIntBE(10, 6);
  return () => {
    counter = counter >= 0xffffffffffff ? 0 : counter + 1;
    return prefix + counter.toString(16).padStart(12, '0');
  };
}

/** Adds `x-request-id` when the client sent none (as Envoy does), so one id follows a request across hops. */
export const requestId =
  (newId: () => string = requestIdGenerator()): HttpLayer =>
  (inner) =>
  (req) => {
    if (!req.headers['x-request-id']) req.headers['x-request-id'] = newId();
    return inner(req);
  };
