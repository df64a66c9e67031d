import { requestId, requestIdGenerator } from './request-id.js';
import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('ids are shaped like random UUIDs and never repeat within a process', () => {
  const next = requestIdGenerator();
  const seen = new Set<string>();
  for (let i = 0; i < 20000; i++) {
    const id = next();
    expect(id).toMatch(UUID_V4);
    seen.add(id);
  }
  expect(seen.size).toBe(20000);
});

test('the random part differs between generators; the counter wraps within 48 bits', () => {
  const a = requestIdGenerator(Buffer.alloc(16, 0x11))();
  const b = requestIdGenerator(Buffer.alloc(16, 0x22))();
  expect(a.slice(0, 24)).not.toBe(b.slice(0, 24));
  const top = Buffer.alloc(16, 0);
  top.writeUIntBE(0xfffffffffffe, 10, 6);
  const next = requestIdGenerator(top);
  expect(next().slice(24)).toBe('ffffffffffff');
  expect(next().slice(24)).toBe('000000000000');
  expect(next()).toMatch(UUID_V4);
  // The carry from the low 24 bits into the high ones.
  const mid = Buffer.alloc(16, 0);
  mid.writeUIntBE(0x000000fffffe, 10, 6);
  const carry = requestIdGenerator(mid);
  expect([carry(), carry(), carry()].map((id) => id.slice(24))).toEqual(['000000ffffff', '000001000000', '000001000001']);
});

test('the layer keeps an id the client sent and adds one otherwise', async () => {
  const seen: (string | string[] | undefined)[] = [];
  const svc = requestId(() => 'fixed')((req: ProxyRequest) => {
    seen.push(req.headers['x-request-id']);
    return Promise.resolve({} as ProxyResponse);
  });
  await svc({ headers: {} } as ProxyRequest);
  await svc({ headers: { 'x-request-id': 'keep-me' } } as unknown as ProxyRequest);
  expect(seen).toEqual(['fixed', 'keep-me']);
});
