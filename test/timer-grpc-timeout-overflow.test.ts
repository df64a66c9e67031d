import * as grpc from '@grpc/grpc-js';
import { testPki } from './helpers/pki.js';
import { meshService } from './helpers/proxy.js';
import { echoClient, type EchoClient } from './helpers/fake-grpc.js';
import { startGrpcPair } from './helpers/grpc-pair.js';

/**
 * Found by the adversary review (grpc-timeout-overflow).
 *
 * What a user does: a gRPC client sets a long deadline, 30 days (a watch stream, a batch
 * job; grpc-go sends e.g. `grpc-timeout: 720H`, grpc-js `2592000S`). The route has no
 * request timeout (the default: requestMs 0, "request off so streams live").
 *
 * What happens: layers/timeouts.ts takes the parsed deadline (2.59e9 ms) as the budget
 * and arms `clock.setTimeout(fire, budget)`; systemClock is Node's setTimeout, which
 * turns any delay over 2^31-1 ms (24.8 days) into 1 ms (TimeoutOverflowWarning). The call
 * fails at once with DEADLINE_EXCEEDED (`wren-proxy-error: deadline-exceeded`), a
 * deadline 30 days away reported as passed, without reaching the backend.
 *
 * What should happen: the call is served. The gRPC HTTP/2 protocol allows TimeoutValue up
 * to 8 digits in hours (PROTOCOL-HTTP2.md, "Requests": about 11,400 years); a deadline
 * past what a timer can hold must be clamped (or left to the next hop), not fired.
 */
const pki = testPki();
let echo: EchoClient, idle: EchoClient;
let close: () => Promise<void>;

beforeAll(async () => {
  const pair = await startGrpcPair(pki, (e) => [
    meshService('echo', 50051, [e], { protocol: 'grpc' }),
    // An operator's "practically no idle timeout" for long streams: accepted by the config parser.
    meshService('echo-long', 50051, [e], { protocol: 'grpc', policy: { timeouts: { idleMs: '720h' } } }),
  ]);
  close = pair.close;
  echo = echoClient(pair.client.outboundPort, 'echo:50051');
  idle = echoClient(pair.client.outboundPort, 'echo-long:50051');
}, 20_000);

afterAll(async () => {
  echo.close();
  idle.close();
  await close();
});

function unary(deadline: number, c: EchoClient = echo): Promise<{ code: number; message: string }> {
  return new Promise((resolve) => {
    c.Unary({ message: 'hi' }, new grpc.Metadata(), { deadline }, (err: grpc.ServiceError | null, res: { message: string } | undefined) =>
      resolve(err ? { code: err.code, message: err.details } : { code: 0, message: res!.message }),
    );
  });
}

test('sanity: a one-minute deadline is served', async () => {
  expect(await unary(Date.now() + 60_000)).toEqual({ code: 0, message: 'hi' });
});

test('a 30-day deadline is served, not failed at once as DEADLINE_EXCEEDED', async () => {
  // Today: { code: 4 (DEADLINE_EXCEEDED), message: 'after 2592000000 ms' } within milliseconds.
  expect(await unary(Date.now() + 30 * 24 * 3600 * 1000)).toEqual({ code: 0, message: 'hi' });
});

/**
 * Found by the adversary review (duration-timer-overflow).
 *
 * The same overflow from configuration: common/schema.ts duration() accepts any length
 * ("720h"), and a TrafficPolicy `timeouts.idleMs: 720h` (a "practically off" idle timeout
 * for long streams) arms a 2.59e9 ms Node timer, which fires after 1 ms: every request to
 * the service fails at once with IDLE_TIMEOUT. A setting that is accepted must work
 * (BRIEF: "A setting that is parsed/documented but ignored is a defect"); either clamp the
 * timers or refuse durations over 2^31-1 ms with an error naming the field.
 */
test('a service whose idle timeout is 720h (accepted by the parser) serves requests', async () => {
  // Today: { code: 4, message: 'stream was idle too long: no activity for 2592000000 ms' }, at once.
  expect(await unary(Date.now() + 60_000, idle)).toEqual({ code: 0, message: 'hi' });
});
