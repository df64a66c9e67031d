import * as grpc from '@grpc/grpc-js';
import { loadIdentityProto, type CertifyRequest, type CertifyResponse } from '../../contract/identity.js';

type Unary = (req: CertifyRequest, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: CertifyResponse) => void) => grpc.ClientUnaryCall;

/** The function the proxy's WorkloadIdentity calls; a CertifyClient's `certify`, or a fake in unit tests. */
export type CertifyFn = (req: CertifyRequest, timeoutMs: number) => Promise<CertifyResponse>;

/** A wren.identity.v1 Identity client (contract/identity.proto). */
export class CertifyClient {
  private readonly client: grpc.Client & { certify: Unary };

  constructor(address: string, credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions = {}) {
    const { Client } = loadIdentityProto();
    this.client = new Client(address, credentials, options) as unknown as grpc.Client & { certify: Unary };
  }

  /** One Certify call with a deadline; rejects with the grpc ServiceError (code + details). */
  readonly certify: CertifyFn = (req, timeoutMs) =>
    new Promise((resolve, reject) => {
      const deadline = new Date(performance.timeOrigin + performance.now() + timeoutMs);
      this.client.certify(req, new grpc.Metadata(), { deadline }, (e, r) => (e ? reject(e) : resolve(r!)));
    });

  close(): void {
    this.client.close();
  }
}
