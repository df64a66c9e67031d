import { setFlagsFromString } from 'node:v8';
import { objectArray } from './object-array.js';

setFlagsFromString('--allow-natives-syntax');
const natives = <A extends unknown[], R>(args: string, body: string) => new Function(...args.split(','), body) as (...a: A) => R;
const sameMap = natives<[object, object], boolean>('a,b', 'return %HaveSameMap(a, b)');
const objectElements = natives<[object], boolean>('a', 'return %HasObjectElements(a)');
type Fn = (...args: never[]) => unknown;
const prepare = natives<[Fn], void>('f', '%PrepareFunctionForOptimization(f)');
const optimizeNext = natives<[Fn], void>('f', '%OptimizeFunctionOnNextCall(f)');
const status = natives<[Fn], number>('f', 'return %GetOptimizationStatus(f)');
const OPTIMIZED = 1 << 4; // V8's OptimizationStatus::kOptimized (runtime-test.cc)

/** An array that has held an object: the map optimised code sees on a pool's older arrays. */
function used(): object[] {
  const a: object[] = objectArray();
  a.push({});
  a.pop();
  return a;
}

class FieldLiteral {
  readonly items: object[] = [];
}

test('an object array is empty and already has the map of an array that has held objects; a field literal has not', () => {
  const a = objectArray<object>();
  expect(a).toEqual([]);
  expect(objectElements(a)).toBe(true);
  expect(sameMap(a, used())).toBe(true);
  // What the pool's origins had: a literal in a field initializer is born small-integer kind.
  const literal = new FieldLiteral().items;
  expect(objectElements(literal)).toBe(false);
  expect(sameMap(literal, used())).toBe(false);
});

test('code optimised on used arrays stays optimised on a new object array, and is deoptimised by a new field literal', () => {
  const pushPop = (a: object[], x: object): object | undefined => {
    a.push(x);
    return a.pop();
  };
  const warm = used();
  prepare(pushPop);
  for (let i = 0; i < 100; i++) pushPop(warm, {});
  optimizeNext(pushPop);
  pushPop(warm, {});
  expect(status(pushPop) & OPTIMIZED).toBe(OPTIMIZED);
  pushPop(objectArray(), {});
  expect(status(pushPop) & OPTIMIZED).toBe(OPTIMIZED);
  pushPop(new FieldLiteral().items, {});
  expect(status(pushPop) & OPTIMIZED).toBe(0);
});
