/**
 * `npm run security`: the security scan of the inbound port, scripted. Starts a sidecar
 * (dev-mesh certificates, STRICT), runs `wren tls-scan` against it with a good, a
 * foreign-CA and an expired client certificate, then testssl.sh (Debian package
 * testssl.sh) when it is installed. Exits 1 when a check fails. docs/security.md lists
 * the findings.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { CertificateAuthority, createRootCa, issueWorkload, writeDevMesh } from '../certs/index.js';
import { scanTls } from '../cli/tls-scan.js';
import { startNode } from './node-process.js';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const dir = await mkdtemp(join(tmpdir(), 'wren-security-'));
const pki = await writeDevMesh(join(dir, 'pki'), { trustDomain: 'cluster.local', workloads: [{ namespace: 'default', serviceAccount: 'client', name: 'client' }, { namespace: 'default', serviceAccount: 'web', name: 'web' }] });
const w = Object.fromEntries(pki.workloads.map((x) => [x.name, x]));
const cfg = join(dir, 'web.yaml');
await writeFile(cfg, stringify({
  identity: { namespace: 'default', serviceAccount: 'web' },
  tls: { certFile: w.web.certFile, keyFile: w.web.keyFile, trustBundleFile: pki.caCertFile },
  listeners: { outbound: { address: '127.0.0.1', port: 0 }, inbound: { address: '127.0.0.1', port: 0 }, admin: { address: '127.0.0.1', port: 0 }, metrics: { address: '127.0.0.1', ipv6Address: '', port: 0 } },
  mesh: { services: [] },
}));
const children: ChildProcess[] = [];
try {
  const proxy = await startNode(children, [here('../cli/wren.js'), 'proxy', '--config', cfg], /"msg":"proxy started".*?"inbound":(\d+)/);
  const port = Number(proxy.match[1]);
  const foreignRoot = createRootCa({ trustDomain: 'cluster.local' });
  const foreign = issueWorkload(new CertificateAuthority({ ...foreignRoot, trustDomain: 'cluster.local' }), 'spiffe://cluster.local/ns/default/sa/client');
  // From the mesh's own CA (a valid chain) with a one-second life, expired by the time it is used.
  const meshCa = new CertificateAuthority({ certPem: await readFile(pki.caCertFile, 'utf8'), keyPem: await readFile(pki.caKeyFile, 'utf8'), trustDomain: 'cluster.local' });
  const expired = issueWorkload(meshCa, 'spiffe://cluster.local/ns/default/sa/client', 1000);
  await new Promise((r) => setTimeout(r, 2000));
  const findings = await scanTls({
    host: '127.0.0.1', port, caPem: await readFile(pki.caCertFile, 'utf8'),
    client: { certPem: await readFile(w.client.certFile, 'utf8'), keyPem: await readFile(w.client.keyFile, 'utf8') },
    foreignClient: { certPem: foreign.certPem, keyPem: foreign.keyPem },
    expiredClient: { certPem: [expired.certPem, ...expired.chainPems].join('\n'), keyPem: expired.keyPem },
  });
  console.log(`== wren tls-scan 127.0.0.1:${port} (a Wren sidecar's inbound port, STRICT) ==`);
  for (const f of findings) console.log(`${f.ok ? 'PASS' : 'FAIL'}  ${f.check.padEnd(48)} ${f.result.padEnd(10)} ${f.detail.replace(/\s+\S*:error:.*$/, '')}`);
  if (spawnSync('testssl', ['--version'], { stdio: 'ignore' }).status === 0) {
    console.log('\n== testssl.sh -p -s -f -R -C -B -O ==');
    spawnSync('testssl', ['--quiet', '--color', '0', '--warnings', 'off', '-p', '-s', '-f', '-R', '-C', '-B', '-O', `127.0.0.1:${port}`], { stdio: 'inherit' });
  } else console.log('\n(testssl.sh is not installed: `apt-get install testssl.sh` adds its independent scan)');
  process.exitCode = findings.every((f) => f.ok) ? 0 : 1;
} finally {
  for (const c of children) c.kill('SIGKILL');
}
