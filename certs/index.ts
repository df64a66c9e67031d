/** Public API of the Wren PKI: SPIFFE IDs, keys, CSRs, the CA, chain validation, dev-mesh files. */
export { PkiError, type PkiErrorCode } from './errors.js';
export { formatSpiffeId, parseSpiffeId, parseSpiffeUri, toSpiffeId, trustDomainId, validateTrustDomain, isSpiffeId, type SpiffeId } from './spiffe.js';
export { generateKeyPair, generateKeyPairAsync, RSA_BITS, type KeyPairPem } from './keys.js';
export { createCsr, readCsr, type ParsedCsr, type RequestedSans } from './csr.js';
export {
  CertificateAuthority,
  createRootCa,
  createIntermediateCa,
  randomSerial,
  CLOCK_SKEW_MS,
  DEFAULT_LEAF_TTL_MS,
  DEFAULT_ROOT_VALIDITY_MS,
  DEFAULT_INTERMEDIATE_VALIDITY_MS,
  MAX_LEAF_TTL_MS,
  type CaMaterial,
  type CaOptions,
  type IssueOptions,
  type IssuedCert,
} from './ca.js';
export { verifyChain, spiffeIdOfCert, certInfo, checkPeerSpiffeId, type VerifyResult, type CertInfo } from './verify.js';
export { splitPemCerts } from './x509.js';
export { writeSecretFile, writePublicFile, loadCaDir, CA_CERT_FILE, CA_KEY_FILE } from './files.js';
export { writeDevMesh, issueWorkload, writeWorkloadFiles, type WorkloadCert, type DevMeshWorkload, type DevMeshFiles } from './dev-mesh.js';
