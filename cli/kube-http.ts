import { request as httpRequest } from '../common/node-http.js';
import { request as httpsRequest, type RequestOptions as HttpsRequestOptions } from 'node:https';
import * as k8s from '@kubernetes/client-node';
import { DEFAULT_RETRY_AFTER, honourRetryAfter, type RetryAfterPolicy } from './retry-after.js';

/**
 * Raw requests to the Kubernetes API server with a kubeconfig's credentials (TLS, token,
 * client certificate: whatever @kubernetes/client-node applies), for the CLI's read-only
 * checks. Raw rather than the typed clients because the checks need what the typed ones
 * hide: the Date header (clock skew), the status code of a GET that may 404, and the
 * pods' `proxy` subresource (the control plane's admin port through the API server).
 */
export interface KubeResponse {
  readonly status: number;
  readonly body: string;
  /** The response's Date header, parsed (NaN when absent). */
  readonly dateMs: number;
  /** The Retry-After header, when there is one (a 429 of API Priority and Fairness, or a pod's through the proxy subresource). */
  readonly retryAfter?: string;
}

export class KubeHttp {
  /** 429/503 answers with Retry-After this client waited out and asked again (getJson and create alike). */
  throttledRetries = 0;
  private readonly counted = { onWait: (): void => void this.throttledRetries++ };

  constructor(
    readonly kc: k8s.KubeConfig,
    private readonly timeoutMs: number,
  ) {}

  /** `--kubeconfig PATH`, else the default chain (KUBECONFIG, ~/.kube/config, in-cluster). */
  static load(kubeconfig: string | null, timeoutMs: number): KubeHttp {
    const kc = new k8s.KubeConfig();
    if (kubeconfig) kc.loadFromFile(kubeconfig);
    else kc.loadFromDefault();
    if (!kc.getCurrentCluster()) throw new Error('no current cluster in the kubeconfig');
    return new KubeHttp(kc, timeoutMs);
  }

  get server(): string {
    return this.kc.getCurrentCluster()!.server;
  }

  async request(method: 'GET' | 'POST', path: string, body?: unknown, extraHeaders: Readonly<Record<string, string>> = {}): Promise<KubeResponse> {
    const base = new URL(this.server);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const opts: HttpsRequestOptions = {
      method, hostname: base.hostname.replace(/^\[|\]$/g, ''), port: base.port || (base.protocol === 'https:' ? 443 : 80),
      path: `${base.pathname.replace(/\/$/, '')}${path}`,
      headers: { accept: 'application/json', ...extraHeaders, ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}) },
      timeout: this.timeoutMs,
    };
    await this.kc.applyToHTTPSOptions(opts);
    const send = base.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        const retryAfter = res.headers['retry-after'];
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), dateMs: Date.parse(String(res.headers.date ?? '')), ...(retryAfter === undefined ? {} : { retryAfter }) }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`no answer from ${this.server} within ${this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /**
   * GET a JSON object; null on 404, an Error naming the status otherwise. A 429 with
   * Retry-After (API Priority and Fairness rejecting a request it has no seat for) is asked
   * again after that wait, within cli/retry-after.ts's bounds, as client-go does.
   */
  async getJson<T>(path: string): Promise<T | null> {
    const r = await honourRetryAfter(`${this.server}${path}`, () => this.request('GET', path), DEFAULT_RETRY_AFTER, this.counted);
    if (r.status === 404) return null;
    if (r.status !== 200) throw new Error(`GET ${path}: HTTP ${r.status}${statusMessage(r.body)}`);
    return JSON.parse(r.body) as T;
  }

  /**
   * POST a request that stores nothing (SelfSubjectAccessReview, TokenRequest: the API
   * server answers and keeps no object, so asking again duplicates nothing). A 429 with
   * Retry-After (API Priority and Fairness rejects before executing) or a 503 with one is
   * asked again after the wait within `retry` (cli/retry-after.ts: 4 requests, 10 s a wait,
   * 30 s in all), as client-go's rest client retries it for any verb; past the bounds a
   * RetryAfterExhausted says what the server asked and how long the CLI waited.
   */
  create(path: string, body: unknown, retry: RetryAfterPolicy = DEFAULT_RETRY_AFTER): Promise<KubeResponse> {
    return honourRetryAfter(`POST ${this.server}${path}`, () => this.request('POST', path, body), retry, this.counted);
  }
}

function statusMessage(body: string): string {
  try {
    const m = (JSON.parse(body) as { message?: unknown }).message;
    return typeof m === 'string' ? `: ${m}` : '';
  } catch {
    return '';
  }
}
