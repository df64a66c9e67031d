import { interleave, median } from '../bench/interleave.js';

// The benchmark's round order (bench/interleave.ts): each path runs once a round and takes
// each place in the order across the rounds, since a fixed order favoured one place
// (docs/benchmarks.md, "The order of the paths").
test('each round runs every path once, starting one path later than the round before', async () => {
  const order: string[] = [];
  const path = (name: string) => [name, async () => { order.push(name); return order.length; }] as const;
  const runs = await interleave(4, [path('direct'), path('wren'), path('haproxy')]);
  expect(order).toEqual(['direct', 'wren', 'haproxy', 'wren', 'haproxy', 'direct', 'haproxy', 'direct', 'wren', 'direct', 'wren', 'haproxy']);
  expect(runs.get('direct')).toEqual([1, 6, 8, 10]);
  expect(runs.get('wren')).toEqual([2, 4, 9, 11]);
  expect(runs.get('haproxy')).toEqual([3, 5, 7, 12]);
});

test('a warm-up runs once per path before the first round, and its result is not a round', async () => {
  const order: string[] = [];
  const path = (name: string) => [name, async () => { order.push(name); return order.length; }, async () => { order.push(`warm ${name}`); return -1; }] as const;
  const runs = await interleave(2, [path('direct'), path('wren')]);
  expect(order).toEqual(['warm direct', 'warm wren', 'direct', 'wren', 'wren', 'direct']);
  expect(runs.get('direct')).toEqual([3, 6]);
  expect(runs.get('wren')).toEqual([4, 5]);
});

test('the median is a measured value: the middle one, the lower middle one for an even count', () => {
  expect(median([3, 1, 2])).toBe(2);
  expect(median([4, 1, 3, 2])).toBe(2);
});
