/**
 * Real mutual TLS between two issued workload certificates over node:tls on loopback:
 * what the proxies do. Node does no hostname check here (mesh certs have no DNS names);
 * the SPIFFE ID is read from the peer certificate instead.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { CertificateAuthority, createRootCa, type CaMaterial } from './ca.js';
import { issueWorkload, type WorkloadCert } from './dev-mesh.js';
import { checkPeerSpiffeId, spiffeIdOfCert, verifyChain } from './verify.js';

const TD = 'cluster.local';
const WEB = 'spiffe://cluster.local/ns/default/sa/web';
const API = 'spiffe://cluster.local/ns/default/sa/api';

interface Served {
  port: number;
  peers: string[];
  clientErrors: Error[];
  close(): Promise<void>;
}

async function serve(w: WorkloadCert, bundle: string[]): Promise<Served> {
  const peers: string[] = [];
  const clientErrors: Error[] = [];
  const server = tls.createServer(
    { key: w.keyPem, cert: w.certPem + w.chainPems.join(''), ca: bundle, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
    (socket) => {
      peers.push(spiffeIdOfCert(socket.getPeerCertificate().raw));
      socket.end('hello ' + peers[peers.length - 1]);
    },
  );
  server.on('tlsClientError', (e) => clientErrors.push(e));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    peers,
    clientErrors,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Connects, reads until the server closes; resolves with what it learned or the error. */
function dial(port: number, w: WorkloadCert, bundle: string[], expectPeer = API): Promise<{ peer?: string; data: string; error?: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    let data = '';
    let peer: string | undefined;
    let error: NodeJS.ErrnoException | undefined;
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      key: w.keyPem,
      cert: w.certPem + w.chainPems.join(''),
      ca: bundle,
      rejectUnauthorized: true,
      checkServerIdentity: checkPeerSpiffeId(expectPeer),
    });
    socket.on('secureConnect', () => {
      peer = spiffeIdOfCert(socket.getPeerCertificate().raw);
    });
    socket.on('data', (d) => (data += d.toString()));
    socket.on('error', (e) => (error = e));
    socket.on('close', () => resolve({ peer, data, ...(error ? { error } : {}) }));
  });
}

describe('mTLS with issued certificates', () => {
  let root: CaMaterial;
  let ca: CertificateAuthority;
  let api: WorkloadCert;
  let web: WorkloadCert;
  let server: Served;

  beforeAll(async () => {
    root = createRootCa({ trustDomain: TD, now: new Date(Date.now() - 7 * 86_400_000) });
    ca = new CertificateAuthority({ ...root, trustDomain: TD });
    api = issueWorkload(ca, API);
    web = issueWorkload(ca, WEB);
    server = await serve(api, [root.certPem]);
  });
  afterAll(() => server.close());

  /**
   * Node's TLS server checks the client certificate once OpenSSL finishes the handshake and,
   * with rejectUnauthorized, destroys the socket without an alert: under TLS 1.3 the client
   * has already seen 'secureConnect' and only observes the connection closing unread.
   * So refusal shows as: no secureConnection on the server, a tlsClientError, no data.
   */
  async function expectRefusedByServer(client: WorkloadCert): Promise<void> {
    const peersBefore = server.peers.length;
    const errorsBefore = server.clientErrors.length;
    const r = await dial(server.port, client, [root.certPem]);
    expect(r.data).toBe('');
    expect(server.peers.length).toBe(peersBefore);
    expect(server.clientErrors.length).toBe(errorsBefore + 1);
    // control: the same server still serves a valid client right after
    expect((await dial(server.port, web, [root.certPem])).data).toBe(`hello ${WEB}`);
  }

  test('handshake succeeds and each side reads the other SPIFFE ID', async () => {
    const r = await dial(server.port, web, [root.certPem]);
    expect(r.error).toBeUndefined();
    expect(r.peer).toBe(API);
    expect(r.data).toBe(`hello ${WEB}`);
    expect(server.peers).toContain(WEB);
  });

  test('a client certificate from a foreign CA is refused by the server', async () => {
    const foreign = createRootCa({ trustDomain: TD, commonName: 'foreign' });
    const intruder = issueWorkload(new CertificateAuthority({ ...foreign, trustDomain: TD }), WEB);
    await expectRefusedByServer(intruder);
  });

  test('a server certificate from a foreign CA is refused by the client', async () => {
    const foreign = createRootCa({ trustDomain: TD, commonName: 'foreign' });
    const imposter = await serve(issueWorkload(new CertificateAuthority({ ...foreign, trustDomain: TD }), API), [root.certPem]);
    try {
      const r = await dial(imposter.port, web, [root.certPem]);
      expect(r.peer).toBeUndefined();
      expect(r.error?.code).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
      expect(imposter.peers).toEqual([]);
    } finally {
      await imposter.close();
    }
  });

  test('an expired client certificate is refused', async () => {
    const expired = issueWorkload(ca, WEB, 60_000, new Date(Date.now() - 86_400_000));
    expect(verifyChain(expired.certPem, [], [root.certPem])).toMatchObject({ ok: false, reason: expect.stringContaining('expired') });
    await expectRefusedByServer(expired);
  });

  test('the right CA but the wrong identity is refused by the client identity check', async () => {
    const r = await dial(server.port, web, [root.certPem], 'spiffe://cluster.local/ns/default/sa/db');
    expect(r.peer).toBeUndefined();
    expect(r.error).toMatchObject({ code: 'PEER_IDENTITY_MISMATCH' });
  });
});
