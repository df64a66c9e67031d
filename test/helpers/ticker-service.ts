import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

const PROTO = fileURLToPath(new URL('../fixtures/resilience.proto', import.meta.url));

/** The resilience suites' gRPC service (test/fixtures/resilience.proto: unary Hang, server-streaming Ticks). */
export const { Ticker } = (grpc.loadPackageDefinition(protoLoader.loadSync(PROTO, { defaults: true })) as unknown as {
  wren: { resilience: { Ticker: grpc.ServiceClientConstructor } };
}).wren.resilience;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type TickerClient = grpc.Client & Record<string, any>;
