import { withoutH2c } from './upgrade-protocols.js';

test.each([
  ['websocket', 'websocket'],
  ['h2c', ''],
  ['H2C', ''],
  [' h2c ', ''],
  ['h2c, websocket', 'websocket'],
  ['websocket,h2c', 'websocket'],
  ['foo/1, h2c, bar', 'foo/1, bar'],
  ['h2c/1', ''],
  ['h2cx', 'h2cx'],
])('withoutH2c(%j) = %j', (offer, left) => expect(withoutH2c(offer)).toBe(left));
