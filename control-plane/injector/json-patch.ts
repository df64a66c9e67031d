/**
 * RFC 6902 JSON Patch, just the part the injector emits (`add`, `replace`), plus an
 * applier so `wren inject` can mutate YAML offline with the very patch the webhook
 * would return. Paths are RFC 6901 pointers: "/" in a key is written "~1", "~" is "~0".
 */
export type JsonPatchOp =
  | { readonly op: 'add'; readonly path: string; readonly value: unknown }
  | { readonly op: 'replace'; readonly path: string; readonly value: unknown };

export const escapePointer = (key: string): string => key.replace(/~/g, '~0').replace(/\//g, '~1');
const unescape = (seg: string): string => seg.replace(/~1/g, '/').replace(/~0/g, '~');

/** Apply ops to a deep copy of `doc` and return the copy. Throws on an invalid path. */
export function applyPatch<T>(doc: T, ops: readonly JsonPatchOp[]): T {
  const root = structuredClone(doc) as unknown;
  for (const op of ops) {
    const segs = op.path.split('/').slice(1).map(unescape);
    if (op.path[0] !== '/' || segs.length === 0) throw new Error(`invalid patch path ${op.path}`);
    let parent = root as Record<string, unknown> | unknown[];
    for (const seg of segs.slice(0, -1)) {
      const next = Array.isArray(parent) ? parent[Number(seg)] : parent[seg];
      if (typeof next !== 'object' || next === null) throw new Error(`patch path ${op.path}: ${seg} does not exist`);
      parent = next as Record<string, unknown> | unknown[];
    }
    const last = segs[segs.length - 1];
    const value = structuredClone(op.value);
    if (Array.isArray(parent)) {
      const i = last === '-' ? parent.length : Number(last);
      if (!Number.isInteger(i) || i < 0 || i > parent.length) throw new Error(`patch path ${op.path}: bad index`);
      if (op.op === 'add') parent.splice(i, 0, value);
      else parent[i] = value;
    } else {
      if (op.op === 'replace' && !(last in parent)) throw new Error(`patch path ${op.path}: nothing to replace`);
      parent[last] = value;
    }
  }
  return root as T;
}
