/**
 * The injector webhook as the control plane runs it: HTTPS on 0.0.0.0:15017 with the
 * serving certificate from the mounted `wren-webhook-tls` Secret, re-read when it
 * changes. cert-manager (or an operator) rotates the Secret; kubelet swaps the mounted
 * files atomically (the `..data` symlink of its atomic writer), so the files are polled
 * and a changed, valid pair is installed with `setSecureContext`: new handshakes get the
 * new certificate, open connections keep theirs. The Secret's mount is optional
 * (manifests/install/30-control-plane.yaml), so when the files are not there yet the
 * webhook starts listening as soon as they appear instead of failing the control plane.
 */
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createSecureContext } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { systemClock, type Clock, type Timer } from '../../common/clock.js';
import { createLogger, type Logger } from '../../common/logger.js';
import { createInjectorServer, webhookTlsOptions } from './injector-server.js';
import type { InjectOptions } from './options.js';
import { namesHost, webhookServiceHost } from './webhook-service.js';

export const WEBHOOK_LISTEN = '0.0.0.0:15017';
export const WEBHOOK_CERT_DIR = '/var/run/wren/webhook';

export interface InjectorWebhookOptions {
  /** HOST:PORT (IPv6 as [::]:15017); default 0.0.0.0:15017. Port 0 picks a free port. */
  readonly listen?: string;
  /** PEM serving certificate (leaf first); default /var/run/wren/webhook/tls.crt. */
  readonly certFile?: string;
  /** PEM private key; default /var/run/wren/webhook/tls.key. */
  readonly keyFile?: string;
  readonly inject?: Partial<InjectOptions>;
  readonly logger?: Logger;
  readonly clock?: Clock;
  /** How often the files are re-read (default 10 s; kubelet refreshes Secret volumes every ~60 s). */
  readonly reloadIntervalMs?: number;
  /** The name the API server checks the certificate against: the webhook Service's (manifests/install/40-injector-webhook.yaml). */
  readonly serviceHost?: string;
}

const WEBHOOK_SERVICE_HOST = webhookServiceHost('wren-system');

export interface InjectorWebhook {
  /** The bound port once listening (the real one when asked for 0); 0 before. */
  readonly port: number;
  readonly listening: boolean;
  /** Resolves with the port once the server listens (at once if it does already). */
  whenListening(): Promise<number>;
  /** Re-read the files now. true when a new certificate was installed (or the server started). */
  reload(): Promise<boolean>;
  close(): Promise<void>;
}

export function splitListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`expected HOST:PORT (or [IPv6]:PORT), got ${JSON.stringify(listen)}`);
  return { host: m[1] ?? m[2], port };
}

interface Pair {
  readonly cert: string;
  readonly key: string;
}

/**
 * Starts the webhook. Rejects when the address is bad or already in use, or when the
 * files exist but do not form a usable certificate/key pair; resolves (not yet
 * listening) when the files are missing, and starts listening once they appear.
 */
export async function startInjectorWebhook(o: InjectorWebhookOptions = {}): Promise<InjectorWebhook> {
  const { host, port } = splitListen(o.listen ?? WEBHOOK_LISTEN);
  const certFile = o.certFile ?? `${WEBHOOK_CERT_DIR}/tls.crt`;
  const keyFile = o.keyFile ?? `${WEBHOOK_CERT_DIR}/tls.key`;
  const clock = o.clock ?? systemClock;
  const log = (o.logger ?? createLogger()).child({ component: 'injector-webhook' });
  const intervalMs = o.reloadIntervalMs ?? 10_000;

  let server: Server | undefined;
  let current: Pair | undefined;
  let timer: Timer | undefined;
  let closed = false;
  let missingLogged = false;
  let badPair: Pair | undefined;
  const waiters: ((port: number) => void)[] = [];
  const boundPort = () => (server?.listening ? (server.address() as AddressInfo).port : 0);

  /** Both files, or undefined while either is missing (a Secret not created yet). */
  const read = async (): Promise<Pair | undefined> => {
    try {
      const [cert, key] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
      return { cert, key };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  };

  /**
   * What makes the API server refuse the serving certificate: a date outside its validity
   * (cert-manager stopped renewing) or a name that is not the Service's. The webhook still
   * serves it (nothing better is there), but every call then fails: pods that ask for the
   * mesh are refused (failurePolicy Fail, the install's) or start without a proxy (Ignore),
   * and the API server's error names no certificate file: warned once per
   * certificate and problem, at install and at each reload tick (a certificate expires
   * while loaded).
   */
  const serviceHost = o.serviceHost ?? WEBHOOK_SERVICE_HOST;
  let refusedWarned = '';
  const checkRefusal = (cert: string) => {
    const x = new X509Certificate(cert);
    const now = clock.wallNow();
    const problems = [
      ...(now > x.validToDate.getTime() ? [`expired at ${x.validTo}`] : now < x.validFromDate.getTime() ? [`not valid before ${x.validFrom}`] : []),
      ...(!namesHost(x, serviceHost) ? [`does not name ${serviceHost} (subjectAltName ${x.subjectAltName ?? 'none'})`] : []),
    ];
    const key = `${x.fingerprint256} ${problems.join('; ')}`;
    if (problems.length === 0 || key === refusedWarned) return;
    refusedWarned = key;
    log.warn(`webhook certificate ${problems.join(' and ')}: the API server refuses it, so pods that ask for the mesh are refused (failurePolicy Fail; with Ignore they start without a proxy)`, { certFile, ...describe(cert) });
  };

  const describe = (cert: string) => {
    const x = new X509Certificate(cert);
    return { subject: x.subject.replace(/\n/g, ', '), subjectAltName: x.subjectAltName, notAfter: x.validTo, fingerprint256: x.fingerprint256 };
  };

  const start = async (pair: Pair): Promise<void> => {
    const s = createInjectorServer({ tls: pair, port, host, ...(o.inject ? { opts: o.inject } : {}), logger: log });
    await once(s, 'listening'); // rejects with EADDRINUSE and the like
    s.on('error', (e) => log.error('webhook server error', { error: e }));
    server = s;
    current = pair;
    log.info('injector webhook listening', { address: `${host}:${boundPort()}`, certFile, ...describe(pair.cert) });
    checkRefusal(pair.cert);
    for (const w of waiters.splice(0)) w(boundPort());
  };

  /** Validates before installing: a half-rotated or mismatched pair keeps the old one serving. */
  const usable = (pair: Pair): boolean => {
    try {
      createSecureContext(webhookTlsOptions(pair));
      new X509Certificate(pair.cert);
      badPair = undefined;
      return true;
    } catch (e) {
      if (badPair?.cert !== pair.cert || badPair.key !== pair.key)
        log.warn('webhook certificate files are not a usable pair; keeping the previous one', { certFile, keyFile, error: e });
      badPair = pair;
      return false;
    }
  };

  // Serialized: the timer and a caller's reload() must not both start a server.
  let chain: Promise<unknown> = Promise.resolve();
  const reload = (): Promise<boolean> => {
    const run = chain.catch(() => undefined).then(reloadOnce);
    chain = run;
    return run;
  };

  const reloadOnce = async (): Promise<boolean> => {
    if (closed) return false;
    const pair = await read();
    if (!pair) {
      if (!missingLogged) log.warn(server ? 'webhook certificate files disappeared; keeping the loaded one' : 'webhook certificate not there yet; the webhook starts when it appears', { certFile, keyFile });
      missingLogged = true;
      return false;
    }
    missingLogged = false;
    if (current && pair.cert === current.cert && pair.key === current.key) {
      checkRefusal(current.cert);
      return false;
    }
    if (!usable(pair)) return false;
    if (!server) {
      await start(pair);
      return true;
    }
    server.setSecureContext(webhookTlsOptions(pair));
    current = pair;
    log.info('webhook certificate reloaded', { certFile, ...describe(pair.cert) });
    checkRefusal(pair.cert);
    return true;
  };

  const tick = () => {
    timer = clock.setTimeout(() => {
      reload().then(
        () => !closed && tick(),
        (e: unknown) => {
          log.error('webhook certificate reload failed', { error: e });
          if (!closed) tick();
        },
      );
    }, intervalMs);
    timer.unref?.();
  };

  // At start a present but broken pair (or a taken port) is a configuration error to
  // surface now; only absent files are waited for.
  const first = await read();
  if (first) {
    try {
      createSecureContext(webhookTlsOptions(first));
    } catch (e) {
      throw new Error(`webhook certificate ${certFile} and key ${keyFile} are not a usable pair: ${(e as Error).message}`, { cause: e });
    }
    await start(first);
  } else {
    await reload();
  }
  tick();

  return {
    get port() {
      return boundPort();
    },
    get listening() {
      return server?.listening ?? false;
    },
    whenListening: () => (server?.listening ? Promise.resolve(boundPort()) : new Promise<number>((r) => waiters.push(r))),
    reload,
    async close() {
      closed = true;
      if (timer) clock.clearTimeout(timer);
      if (!server?.listening) return;
      const s = server;
      await new Promise<void>((r) => {
        s.close(() => r());
        s.closeAllConnections();
      });
    },
  };
}
