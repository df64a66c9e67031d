import { appendFields, cleanHeaders, cleanTrailers, MESH } from './headers.js';

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
