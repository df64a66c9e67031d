import { adminHostRefusal } from './admin-host.js';

test('loopback names, IP literals and no Host are answered', () => {
  for (const h of [undefined, '', 'localhost', 'LOCALHOST:15000', 'localhost.:15000', '127.0.0.1', '127.0.0.1:15000', '127.0.1.254:15014', '[::1]:15000', '[::1]', '10.244.1.7:15014', '[fd00::7]:15014'])
    expect(adminHostRefusal(h)).toBeNull();
});

test('a DNS name (what a rebinding page sends) is refused, saying why', () => {
  for (const h of ['evil.example:15000', 'evil.example', 'localhost.evil.example:15000', '127.0.0.1.nip.io:15000', 'wren-control-plane.wren-system:15014', '[::1:15000', '[evil]:15000', '::1'])
    expect(adminHostRefusal(h)).toMatch(/DNS rebinding/);
  expect(adminHostRefusal('evil.example:15000')).toContain('Host: evil.example:15000');
});
