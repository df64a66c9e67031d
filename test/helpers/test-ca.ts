import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A throwaway CA and a server certificate it signs for `dnsNames`, made with the openssl
 * CLI (as an operator's private CA would be): for HTTPS servers that stand in for hosts
 * outside the mesh.
 */
export function testServerCert(dnsNames: readonly string[]): { readonly ca: string; readonly cert: string; readonly key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'wren-test-ca-'));
  const f = (n: string) => join(dir, n);
  const run = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  try {
    run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=wren test external CA', '-keyout', f('ca.key'), '-out', f('ca.crt')]);
    run(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${dnsNames[0]}`, '-keyout', f('srv.key'), '-out', f('srv.csr')]);
    writeFileSync(f('ext.cnf'), `subjectAltName=${dnsNames.map((d) => `DNS:${d}`).join(',')}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
    run(['x509', '-req', '-in', f('srv.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', f('ext.cnf'), '-out', f('srv.crt')]);
    return { ca: readFileSync(f('ca.crt'), 'utf8'), cert: readFileSync(f('srv.crt'), 'utf8'), key: readFileSync(f('srv.key'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
