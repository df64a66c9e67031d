/**
 * An empty array whose elements kind is already that of the objects it will hold.
 *
 * A literal `[]` is born PACKED_SMI_ELEMENTS and changes map at its first push of an object.
 * Arrays made in a class field initializer get no allocation-site feedback, so every one is
 * born that way. Code that V8 optimised while it only saw arrays past that first push
 * checks for their map, and deoptimises ("wrong map") on an array made later and not yet
 * pushed to; the function then runs unoptimised until it is compiled again, on the
 * sidecar's main thread (`--no-concurrent-recompilation`), 8-15 ms during which no request
 * moves. The HTTP/1.1 pool's origins were such arrays: an origin is forgotten when its last
 * connection closes (the 4 s idle timeout) and made again by the next request, so the first
 * burst after a quiet spell deoptimised the pool's hot functions (docs/benchmarks.md, "Issue
 * 12, 2026-12-06 eighteenth session"). Born PACKED_ELEMENTS, every such array has the map
 * the optimised code expects.
 */
export function objectArray<T extends object>(): T[] {
  const a: unknown[] = [undefined];
  a.pop();
  return a as T[];
}
