import { setFlagsFromString } from 'node:v8';
import { fieldsToHeaders } from './head.js';

const F = ['content-type', 'application/grpc', 'content-length', '0', 'wren-content-length', '7', 'te', 'trailers', 'x-a', '1'];

test('as-is: a message from the app or a client keeps its content-length and any field named like a mesh one', () => {
  expect(fieldsToHeaders(F)).toEqual({ 'content-type': 'application/grpc', 'content-length': '0', 'wren-content-length': '7', 'x-a': '1' });
});

test("from-mesh: an HTTP/2 message sent chunked between the sidecars gets its own content-length back, the hop's is dropped", () => {
  expect(fieldsToHeaders(F, false, 'from-mesh')).toEqual({ 'content-type': 'application/grpc', 'content-length': '7', 'x-a': '1' });
  // Without one, no content-length at all (END_STREAM frames an HTTP/2 message).
  expect(fieldsToHeaders(['content-length', '12', 'x-a', '1'], false, 'from-mesh')).toEqual({ 'x-a': '1' });
  // Not a plain number: dropped, never passed on as a content-length.
  for (const bad of ['-1', '1e3', '12, 12', '', '1234567890123456']) {
    expect(fieldsToHeaders(['wren-content-length', bad], false, 'from-mesh')).toEqual({});
  }
});

test('drop-mesh: another message from a peer sidecar loses a wren-content-length and keeps its content-length', () => {
  expect(fieldsToHeaders(F, false, 'drop-mesh')).toEqual({ 'content-type': 'application/grpc', 'content-length': '0', 'x-a': '1' });
});

test('the map is built without deletes: it stays a fast-mode object (a delete would make it a dictionary for every later read)', () => {
  setFlagsFromString('--allow-natives-syntax');
  const hasFastProperties = new Function('o', 'return %HasFastProperties(o)') as (o: object) => boolean;
  const deleted = fieldsToHeaders(F);
  delete deleted['wren-content-length'];
  expect(hasFastProperties(deleted)).toBe(false); // what the old way (build, then delete) gave
  expect(hasFastProperties(fieldsToHeaders(F, false, 'from-mesh'))).toBe(true);
  expect(hasFastProperties(fieldsToHeaders(F, false, 'drop-mesh'))).toBe(true);
});

test('fields a Connection field lists are hop-by-hop: dropped, whatever their case, with a changing value and two Connection fields', () => {
  const msg = (conn: string) => ['connection', conn, 'keep-alive', 'timeout=5', 'x-hop', '1', 'x-end', '2'];
  // The same value twice (the second from the memo), then another: each message by its own Connection field.
  expect(fieldsToHeaders(msg('keep-alive, X-Hop'))).toEqual({ 'x-end': '2' });
  expect(fieldsToHeaders(msg('keep-alive, X-Hop'))).toEqual({ 'x-end': '2' });
  expect(fieldsToHeaders(msg('keep-alive'))).toEqual({ 'x-hop': '1', 'x-end': '2' });
  expect(fieldsToHeaders(msg(' x-end ,x-hop'))).toEqual({});
  expect(fieldsToHeaders(['connection', 'x-a', 'x-a', '1', 'connection', 'X-B', 'x-b', '2', 'x-c', '3'])).toEqual({ 'x-c': '3' });
  expect(fieldsToHeaders(msg(''))).toEqual({ 'x-hop': '1', 'x-end': '2' });
});
