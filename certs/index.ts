/** Public API of the Wren PKI: SPIFFE IDs, keys, CSRs, the CA, chain validation, dev-mesh files. */
export { PkiError, type PkiErrorCode } from './errors.js';
export { formatSpiffeId, parseSpiffeId, type SpiffeId } from './spiffe.js';
export { generateKeyPair, generateKeyPairAsync } from './keys.js';
export { createCsr, readCsr } from './csr.js';
export { CertificateAuthority, createRootCa, createIntermediateCa, DEFAULT_LEAF_TTL_MS, MAX_LEAF_TTL_MS, type CaMaterial, type IssuedCert } from './ca.js';
export { verifyChain, certInfo, checkPeerSpiffeId, spiffeIdOfLeaf } from './verify.js';
export { splitPemCerts } from './x509.js';
export { writeSecretFile, writePublicFile } from './files.js';
export { writeDevMesh, issueWorkload } from './dev-mesh.js';
