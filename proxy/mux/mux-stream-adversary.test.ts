import { FLAG_FIN, FrameType, frameHeader } from './frame.js';
import { MuxTestPairs } from './mux-test-pair.js';
import type { MuxStream } from './mux-stream.js';

/**
 * Attacks on the virtual connection's direct paths (mux-stream.ts setSink and write()):
 * whichever path a payload takes, a stream must behave as one stream.
 */
const pairs = new MuxTestPairs();
afterEach(() => pairs.destroyAll());
afterAll(() => pairs.close());

const tick = () => new Promise((r) => setImmediate(r));
const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !cond(); i++) await tick();
  expect(cond()).toBe(true);
};

/** A raw DATA frame, as a peer that ignores the rules writes it. */
const data = (id: number, text: string, flags = 0): Buffer => Buffer.concat([frameHeader(FrameType.Data, flags, id, text.length), Buffer.from(text, 'latin1')]);

test('DATA after the FIN never reaches a sink reader: the stream is reset, as on the Readable path', async () => {
  const got: string[] = [];
  let served: MuxStream | null = null;
  const { raw } = await pairs.pair({
    onStream: (s) => {
      served = s;
      s.on('data', (d: Buffer) => got.push(`data:${d.toString('latin1')}`));
      s.setSink((d) => got.push(`sink:${d.toString('latin1')}`));
    },
  });
  raw.write(data(1, 'req', FLAG_FIN));
  await until(() => got.length === 1);
  raw.write(data(1, 'smuggled'));
  await until(() => served!.destroyed);
  await tick();
  expect(got).toEqual(['sink:req']);
});
