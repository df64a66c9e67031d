import { parseTargetPort } from './target-port.js';

const reserved = new Set([4140, 4143]);
const port = (raw: unknown): number | string => {
  const r = parseTargetPort(raw, reserved);
  return r instanceof Error ? r.message : r;
};

test('a target port is 1 to 5 ASCII digits naming a port of the app', () => {
  expect(port('8080')).toBe(8080);
  expect(port('00080')).toBe(80);
  expect(port('65535')).toBe(65535);
  expect(port(['9090', '8080'])).toBe(9090);
  expect(port('0')).toBe('target port 0 out of range');
  expect(port('65536')).toBe('target port 65536 out of range');
  expect(port('4143')).toBe('target port 4143 is reserved for the proxy');
  for (const bad of [undefined, 8080, '', '123456', '80a', ' 80', '80 ', '+80', '-1', '8.0', '\uff18\uff10', '٨٠'])
    expect(port(bad)).toBe('missing or malformed target port');
});

test('it accepts exactly what /^\\d{1,5}$/ accepts (random strings of digits and near-digits)', () => {
  const alphabet = '0123456789/:a \u0660\uff10';
  let seed = 7;
  const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  for (let i = 0; i < 5000; i++) {
    let s = '';
    const len = rnd(8);
    for (let k = 0; k < len; k++) s += alphabet[rnd(rnd(4) === 0 ? alphabet.length : 10)];
    const r = parseTargetPort(s, reserved);
    const wellFormed = !(r instanceof Error && r.message === 'missing or malformed target port');
    expect([s, wellFormed]).toEqual([s, /^\d{1,5}$/.test(s)]);
  }
});
