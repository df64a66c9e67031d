import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ConfigError, arr, obj, parseWith, str, type Parser } from '../../common/schema.js';
import { AuthError, presentedToken, type Authenticator, type Principal } from './authenticator.js';
import { bootstrapTokenId } from './bootstrap-token-id.js';

/**
 * Bootstrap tokens: a file of shared secrets, each naming the workload it proves, for
 * meshes without a Kubernetes API server (the local demo, VMs). Format (YAML or JSON):
 *
 *   tokens:
 *     - token: "4f0c…"            # at least 16 characters
 *       namespace: default
 *       serviceAccount: web
 *
 * A list rather than a map keyed by token, so a validation error names `tokens[2]`
 * instead of printing the secret. Only SHA-256 digests are kept in memory, and a lookup
 * compares the caller's digest with every entry using crypto.timingSafeEqual, without
 * stopping at the first match, so timing reveals neither which entry matched nor how
 * many bytes did. Tokens are never logged. A matched entry also gets its Certify limit id
 * (bootstrap-token-id.ts, scrypt, computed once off the event loop and kept), which stands for
 * the token in the keys its certificates carry.
 */
export interface BootstrapTokenEntry {
  readonly token: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

export const MIN_BOOTSTRAP_TOKEN_LENGTH = 16;
const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

const parser: Parser<{ readonly tokens: readonly BootstrapTokenEntry[] }> = obj({
  tokens: arr(
    obj({
      token: (raw, path) => {
        if (typeof raw !== 'string') throw new ConfigError(path, 'expected a string');
        if (raw.length < MIN_BOOTSTRAP_TOKEN_LENGTH) throw new ConfigError(path, `must be at least ${MIN_BOOTSTRAP_TOKEN_LENGTH} characters`);
        return raw;
      },
      namespace: str({ pattern: NAME }),
      serviceAccount: str({ pattern: NAME }),
    }),
    { min: 1 },
  ),
});

const digest = (b: Buffer | string): Buffer => createHash('sha256').update(b).digest();

export class BootstrapTokenAuthenticator implements Authenticator {
  readonly name = 'bootstrap';
  private readonly entries: readonly { readonly hash: Buffer; readonly namespace: string; readonly serviceAccount: string }[];
  /** Per entry, its Certify limit id (bootstrap-token-id.ts), computed at its first match: scrypt is dear, a token file long. */
  private readonly ids = new Map<number, Promise<string>>();

  constructor(entries: readonly BootstrapTokenEntry[]) {
    const seen = new Set<string>();
    this.entries = entries.map((e, i) => {
      const hash = digest(e.token);
      const key = hash.toString('hex');
      if (seen.has(key)) throw new ConfigError(`tokens[${i}].token`, 'the same token appears twice');
      seen.add(key);
      return { hash, namespace: e.namespace, serviceAccount: e.serviceAccount };
    });
  }

  /** Reads and validates a token file; errors name the file and the entry's index, never the token. */
  static fromFile(file: string): BootstrapTokenAuthenticator {
    let raw: unknown;
    try {
      raw = parseYaml(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new ConfigError('', `cannot read bootstrap tokens: ${(e as Error).message.split('\n')[0]}`, file);
    }
    const parsed = parseWith(parser, raw, file);
    try {
      return new BootstrapTokenAuthenticator(parsed.tokens);
    } catch (e) {
      if (e instanceof ConfigError) throw new ConfigError(e.path, e.problem, file);
      throw e;
    }
  }

  get size(): number {
    return this.entries.length;
  }

  async authenticate(token: Buffer): Promise<Principal> {
    const presented = presentedToken(token);
    if (presented.length === 0) throw new AuthError('unauthenticated', 'no token was presented');
    const h = digest(presented);
    let index = -1;
    for (let i = 0; i < this.entries.length; i++) if (timingSafeEqual(h, this.entries[i].hash) && index < 0) index = i;
    if (index < 0) throw new AuthError('unauthenticated', 'unknown bootstrap token');
    const match = this.entries[index];
    let id = this.ids.get(index);
    if (!id) {
      this.ids.set(index, (id = bootstrapTokenId(match.namespace, match.serviceAccount, presented)));
      id.catch(() => this.ids.delete(index));
    }
    return { namespace: match.namespace, serviceAccount: match.serviceAccount, via: this.name, shared: true, sharedId: await id };
  }
}
