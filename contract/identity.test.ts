import { controlPlaneSpiffeId, loadIdentityProto, type CertifyRequest, type CertifyResponse } from './identity.js';

describe('identity contract', () => {
  test('Certify request and response survive the wire with the field names the code uses', () => {
    const { service } = loadIdentityProto();
    const m = service.Certify;
    expect(m.path).toBe('/wren.identity.v1.Identity/Certify');
    expect(m.requestStream || m.responseStream).toBe(false);
    const req: CertifyRequest = { identity: 'spiffe://td/ns/a/sa/b', token: Buffer.from([0, 1, 255]), csrPem: 'CSR', requestedLifetimeMs: 3000 };
    expect(m.requestDeserialize(m.requestSerialize(req))).toEqual(req);
    const res: CertifyResponse = { certChainPem: 'LEAF', trustBundlePem: 'ROOTS', validUntilMs: 1_900_000_000_123 };
    expect(m.responseDeserialize(m.responseSerialize(res))).toEqual(res);
  });

  test('the control plane identity', () => {
    expect(controlPlaneSpiffeId('cluster.local')).toBe('spiffe://cluster.local/ns/wren-system/sa/wren-control-plane');
    expect(controlPlaneSpiffeId('td', 'mesh')).toBe('spiffe://td/ns/mesh/sa/wren-control-plane');
  });
});
