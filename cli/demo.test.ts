import { createServer, type Server } from 'node:net';
import { demoCommand } from './demo.js';

/**
 * `wren demo` refuses what it cannot start with a line that says why, before it writes or
 * spawns anything: a --base-ip that is not three octets (exit 2), and pod addresses whose
 * ports another demo holds (exit 1), where it used to throw a stack trace (getaddrinfo
 * ENOTFOUND, listen EADDRINUSE) and leave its temp directory behind.
 */
async function run(...argv: string[]) {
  let out = '';
  let err = '';
  const code = await demoCommand(argv, (s) => (out += s), (s) => (err += s));
  return { code, out, err };
}

test.each(['300.1.1', '127.0.1.5', '127.0', 'localhost'])('--base-ip %j is a usage error', async (base) => {
  const r = await run('--smoke', '--base-ip', base);
  expect(r).toMatchObject({ code: 2, out: '' });
  expect(r.err).toContain(`wren demo: --base-ip: expected the first three octets of an IPv4 address (e.g. 127.0.2), got "${base}"`);
  expect(r.err).toContain('Usage: wren demo');
});

test('a pod address whose port is taken (another demo) is one line and exit 1, nothing started', async () => {
  // The web pod of --base-ip 127.0.77 is 127.0.77.2:8080.
  const taken: Server = createServer();
  await new Promise<void>((r) => taken.listen(8080, '127.0.77.2', r));
  try {
    const r = await run('--smoke', '--base-ip', '127.0.77');
    expect(r).toEqual({
      code: 1, out: '',
      err: 'wren demo: cannot start the web app on 127.0.77.2:8080: the address is in use (another demo running? stop it, or use --base-ip for other addresses)\n',
    });
  } finally {
    taken.close();
  }
  // The cache's port taken: the web app it had bound is let go again.
  const cacheTaken: Server = createServer();
  await new Promise<void>((r) => cacheTaken.listen(6379, '127.0.77.3', r));
  try {
    const r = await run('--smoke', '--base-ip', '127.0.77');
    expect(r.code).toBe(1);
    expect(r.err).toContain('cannot start the cache on 127.0.77.3:6379: the address is in use');
    const web: Server = createServer();
    await new Promise<void>((resolve, reject) => web.once('error', reject).listen(8080, '127.0.77.2', resolve));
    web.close();
  } finally {
    cacheTaken.close();
  }
});
