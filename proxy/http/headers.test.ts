import { appendFields, cleanHeaders, cleanTrailers, field, header, MESH, setField, type Headers } from './headers.js';

test('cleanHeaders drops pseudo-headers, hop-by-hop fields and what connection lists; keeps te: trailers only', () => {
  const h = cleanHeaders({ ':path': '/', 'content-type': 'application/grpc', te: 'trailers', connection: 'x-hop', 'x-hop': '1', 'keep-alive': '5', 'x-a': ['1', '2'] });
  expect(h).toEqual({ 'content-type': 'application/grpc', te: 'trailers', 'x-a': ['1', '2'] });
  expect(cleanHeaders({ te: 'gzip, Trailers' })).toEqual({ te: 'trailers' });
  expect(cleanHeaders({ te: 'gzip' })).toEqual({});
});

test('cleanTrailers drops te and the mesh fields, and is undefined when nothing is left', () => {
  expect(cleanTrailers({ 'grpc-status': '0', te: 'trailers', [MESH.clientCert]: 'forged', [MESH.peer]: 'x' })).toEqual({ 'grpc-status': '0' });
  expect(cleanTrailers({ te: 'trailers', [MESH.peer]: 'x', ':status': '200' })).toBeUndefined();
  expect(cleanTrailers(undefined)).toBeUndefined();
});

test('appendFields: one line per list value, pseudo-headers and names the exception has skipped', () => {
  const out = [':method', 'GET'];
  appendFields(out, { a: '1', b: ['2', '3'], ':path': '/x', c: 'old' }, { c: 'new' });
  expect(out).toEqual([':method', 'GET', 'a', '1', 'b', '2', 'b', '3']);
});

// adv9 D6: header maps are plain objects; a configured name like `constructor` found
// Object.prototype's member on a request without that field.
test('field and header read own fields only: constructor and __proto__ are names like any other', () => {
  const h: Headers = { a: '1' };
  for (const name of ['constructor', '__proto__', 'hasOwnProperty', 'toString']) {
    expect(field(h, name)).toBeUndefined();
    expect(header(h, name)).toBeUndefined();
  }
  setField(h, 'constructor', 'c');
  setField(h, '__proto__', ['p1', 'p2']);
  expect(Object.getPrototypeOf(h)).toBe(Object.prototype); // a field, not the prototype
  expect(field(h, 'constructor')).toBe('c');
  expect(field(h, '__proto__')).toEqual(['p1', 'p2']);
  expect(header(h, '__proto__')).toBe('p1');
  expect(Object.keys(h)).toEqual(['a', 'constructor', '__proto__']);
});

test('cleanHeaders keeps a __proto__ field as a field (node:http2 passes one on), never as the prototype', () => {
  const raw = Object.create(null) as Record<string, unknown>;
  raw['__proto__'] = ['x', 'y'];
  raw['a'] = '1';
  const h = cleanHeaders(raw);
  expect(Object.getPrototypeOf(h)).toBe(Object.prototype);
  expect(Object.hasOwn(h, '__proto__')).toBe(true);
  expect(field(h, '__proto__')).toEqual(['x', 'y']);
  const keys: string[] = [];
  for (const k in h) keys.push(k);
  expect(keys).toEqual(['__proto__', 'a']);
});
