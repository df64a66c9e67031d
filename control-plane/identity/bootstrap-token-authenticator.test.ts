import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../common/schema.js';
import { AuthError } from './authenticator.js';
import { bootstrapTokenIdSync } from './bootstrap-token-id.js';
import { BootstrapTokenAuthenticator } from './bootstrap-token-authenticator.js';

const T1 = 'token-one-aaaaaaaaaaaaaaaa';
const T2 = 'token-two-bbbbbbbbbbbbbbbb';
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-boot-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function file(name: string, text: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, text);
  return p;
}

describe('BootstrapTokenAuthenticator', () => {
  test('maps each token to its workload (YAML and JSON files)', async () => {
    const yaml = await file('t.yaml', `tokens:\n  - { token: ${T1}, namespace: default, serviceAccount: web }\n  - { token: ${T2}, namespace: shop, serviceAccount: cart }\n`);
    const json = await file('t.json', JSON.stringify({ tokens: [{ token: T1, namespace: 'default', serviceAccount: 'web' }] }));
    const a = BootstrapTokenAuthenticator.fromFile(yaml);
    expect(a.size).toBe(2);
    // shared: a bootstrap token may be one secret a fleet shares; the Certify limit charges it as a fleet, with a bucket sized for one (certify-limiter.ts).
    // sharedId: what stands for the token in the Certify limit's key (bootstrap-token-id.ts), the same under every CA.
    expect(await a.authenticate(Buffer.from(T1))).toEqual({ namespace: 'default', serviceAccount: 'web', via: 'bootstrap', shared: true, sharedId: bootstrapTokenIdSync('default', 'web', T1) });
    expect(await a.authenticate(Buffer.from(`${T2}\n`))).toEqual({ namespace: 'shop', serviceAccount: 'cart', via: 'bootstrap', shared: true, sharedId: bootstrapTokenIdSync('shop', 'cart', T2) });
    expect(await BootstrapTokenAuthenticator.fromFile(json).authenticate(Buffer.from(T1))).toMatchObject({ serviceAccount: 'web' });
  });

  test('unknown, empty and near-miss tokens are refused as unauthenticated', async () => {
    const a = new BootstrapTokenAuthenticator([{ token: T1, namespace: 'default', serviceAccount: 'web' }]);
    for (const t of ['', '   ', T1.slice(0, -1), T1 + 'a', T1.toUpperCase()]) {
      const e = await a.authenticate(Buffer.from(t)).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(AuthError);
      expect((e as AuthError).kind).toBe('unauthenticated');
    }
  });

  test('file errors name the entry by index and never print a token', async () => {
    const short = await file('short.yaml', `tokens:\n  - { token: ${T1}, namespace: default, serviceAccount: web }\n  - { token: tooshort, namespace: default, serviceAccount: web }\n`);
    expect(() => BootstrapTokenAuthenticator.fromFile(short)).toThrow(new ConfigError('tokens[1].token', 'must be at least 16 characters', short));
    const dup = await file('dup.yaml', `tokens:\n  - { token: ${T1}, namespace: default, serviceAccount: web }\n  - { token: ${T1}, namespace: shop, serviceAccount: cart }\n`);
    let msg = '';
    try {
      BootstrapTokenAuthenticator.fromFile(dup);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toBe(`${dup}: tokens[1].token: the same token appears twice`);
    expect(msg).not.toContain(T1);
    const badNs = await file('ns.yaml', `tokens:\n  - { token: ${T1}, namespace: Default, serviceAccount: web }\n`);
    expect(() => BootstrapTokenAuthenticator.fromFile(badNs)).toThrow(/tokens\[0\]\.namespace: expected to match/);
    expect(() => BootstrapTokenAuthenticator.fromFile(join(dir, 'missing.yaml'))).toThrow(/cannot read bootstrap tokens/);
    const empty = await file('empty.yaml', 'tokens: []\n');
    expect(() => BootstrapTokenAuthenticator.fromFile(empty)).toThrow(/tokens: expected at least 1 item/);
  });
});
