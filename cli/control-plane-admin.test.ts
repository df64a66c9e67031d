import { lookup } from 'node:dns/promises';
import { hostname } from 'node:os';
import { addressed } from './control-plane-admin.js';

test('addressed: a DNS name becomes the address it resolves to (the admin port answers only IP literals and localhost, ADV5-14); the rest is left as given', async () => {
  expect(await addressed('127.0.0.1:15014')).toBe('127.0.0.1:15014');
  expect(await addressed('[::1]:15014')).toBe('[::1]:15014');
  expect(await addressed('localhost:15014')).toBe('localhost:15014');
  const ip = await lookup(hostname()).then((a) => a.address, () => null);
  if (ip !== null) expect(await addressed(`${hostname()}:15014`)).toBe(`${ip.includes(':') ? `[${ip}]` : ip}:15014`);
  await expect(addressed('no-such-host.invalid:15014')).rejects.toThrow();
});
