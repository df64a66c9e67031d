import type { FaultInjection } from './model.js';
import { duration, fail, literal, map, num, obj, optional, record, str, type Parser } from '../common/schema.js';

/**
 * gRPC status names (grpc/doc/statuscodes.md) an abort may answer with, by code. OK is
 * left out: an "abort" that succeeds is not a fault.
 */
export const GRPC_STATUS_CODES: Readonly<Record<string, number>> = Object.freeze({
  CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, DATA_LOSS: 15, UNAUTHENTICATED: 16,
});

/** Absent: every matching request (the fault is meant to fire); 0 turns it off without deleting it. */
const percentage = num({ min: 0, max: 100, default: 100 });
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * TrafficPolicy `fault` (model.ts FaultInjection), Istio's HTTPFaultInjection in Wren's
 * spelling: `percentage` is a plain number 0-100 (Istio: `percentage.value`). The parsed
 * form is also the wire form (policy_json), so it parses again unchanged.
 */
export const parseFaultInjection: Parser<FaultInjection> = map(
  obj({
    delay: optional(obj({ fixedDelay: (raw, path) => (raw === undefined ? fail(path, 'is required') : duration()(raw, path)), percentage })),
    abort: optional(
      map(
        obj({
          httpStatus: optional(num({ int: true, min: 200, max: 599 })),
          grpcStatus: optional(literal(Object.keys(GRPC_STATUS_CODES))),
          percentage,
        }),
        (a, path) => {
          if ((a.httpStatus === undefined) === (a.grpcStatus === undefined)) fail(path, 'exactly one of httpStatus and grpcStatus is required');
          return a;
        },
      ),
    ),
    match: optional(
      obj({
        pathPrefix: str({ default: '/', pattern: /^\/\S*$/ }),
        headers: map(record(str()), (h, path) => {
          for (const k of Object.keys(h)) if (!HEADER_NAME.test(k)) fail(`${path}.${k}`, 'is not a valid header name');
          return Object.freeze(Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v])));
        }),
      }),
    ),
  }),
  (f, path) => {
    if (f.delay === undefined && f.abort === undefined) fail(path, 'delay or abort is required');
    // Drop the unset keys so the wire form (JSON) and a re-parse are the same object.
    return Object.freeze(Object.fromEntries(Object.entries(f).filter(([, v]) => v !== undefined))) as FaultInjection;
  },
);
