import * as grpc from '@grpc/grpc-js';
import { NO_ENV_PROXY } from '../../common/grpc-env-proxy.js';
import { loadIdentityProto, type CertifyRequest, type CertifyResponse } from '../../contract/identity.js';
import { credentialsGeneration } from './control-plane-credentials.js';

type Unary = (req: CertifyRequest, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: CertifyResponse) => void) => grpc.ClientUnaryCall;

/**
 * The function the proxy's WorkloadIdentity calls; a CertifyClient's `certify`, or a fake in
 * unit tests. `signal` cancels the call (a SIGTERM while the sidecar waits for its first
 * certificate): it rejects with the signal's reason.
 */
export type CertifyFn = (req: CertifyRequest, timeoutMs: number, signal?: AbortSignal) => Promise<CertifyResponse>;

/**
 * A wren.identity.v1 Identity client (contract/identity.proto).
 *
 * With credentials from controlPlaneCredentials it presents the proxy's current workload
 * certificate once there is one (the control plane then renews by certificate, the token
 * being the fallback): a call after the presented certificate changed goes over a new
 * channel, since an open connection keeps the certificate of its handshake.
 */
export class CertifyClient {
  private client: grpc.Client & { certify: Unary };
  private generation: number;

  constructor(
    private readonly address: string,
    private readonly credentials: grpc.ChannelCredentials,
    private readonly options: grpc.ChannelOptions = {},
  ) {
    this.generation = credentialsGeneration(credentials);
    this.client = this.open();
  }

  private open(): grpc.Client & { certify: Unary } {
    const { Client } = loadIdentityProto();
    // Whatever the options (the insecure channel of discovery.insecure has none): never an
    // environment's proxy (common/grpc-env-proxy.ts).
    return new Client(this.address, this.credentials, { ...this.options, ...NO_ENV_PROXY }) as unknown as grpc.Client & { certify: Unary };
  }

  /**
   * One Certify call with a deadline; rejects with the grpc ServiceError (code + details),
   * or with `signal`'s reason once it aborts (the call is cancelled: nothing of it keeps
   * the process alive).
   */
  readonly certify: CertifyFn = (req, timeoutMs, signal) =>
    new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const gen = credentialsGeneration(this.credentials);
      if (gen !== this.generation) {
        this.client.close();
        this.client = this.open();
        this.generation = gen;
      }
      const deadline = new Date(performance.timeOrigin + performance.now() + timeoutMs);
      const onAbort = () => {
        reject(signal!.reason);
        call.cancel();
      };
      const call = this.client.certify(req, new grpc.Metadata(), { deadline }, (e, r) => {
        signal?.removeEventListener('abort', onAbort);
        if (e) reject(e);
        else resolve(r!);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });

  close(): void {
    this.client.close();
  }
}
