/**
 * The control plane's webhook listener over real HTTPS: a real AdmissionReview answered
 * with a patch, certificate rotation the way kubelet updates a mounted Secret (the
 * `..data` symlink swap of its atomic writer), a broken pair that must not replace a
 * good one, and a Secret that appears only after start.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fjp from 'fast-json-patch';
import { createLogger, silentLogger } from '../common/logger.js';
import { systemClock } from '../common/clock.js';
import { startInjectorWebhook, splitListen, type InjectorWebhook } from '../control-plane/injector/webhook-listener.js';
import { callWebhook, WEBHOOK_HOST, type Json } from './helpers/webhook-client.js';


const HOST = WEBHOOK_HOST;
let dir: string;
const open: InjectorWebhook[] = [];

/** A fresh self-signed serving certificate for the webhook Service name (as an operator or cert-manager makes). */
function makeCert(name: string): { cert: string; key: string } {
  const crt = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', `/CN=${HOST}/O=${name}`, '-addext', `subjectAltName=DNS:${HOST}`, '-keyout', key, '-out', crt,
  ], { stdio: 'pipe' });
  return { cert: readFileSync(crt, 'utf8'), key: readFileSync(key, 'utf8') };
}

/** Writes a Secret volume the way kubelet's atomic writer does: versioned dir, `..data` symlink, file symlinks. */
function writeSecretVolume(mount: string, version: string, files: { cert: string; key: string }): void {
  mkdirSync(mount, { recursive: true });
  const ver = join(mount, `..${version}`);
  mkdirSync(ver);
  writeFileSync(join(ver, 'tls.crt'), files.cert);
  writeFileSync(join(ver, 'tls.key'), files.key);
  symlinkSync(`..${version}`, join(mount, '..data_tmp'));
  renameSync(join(mount, '..data_tmp'), join(mount, '..data')); // the atomic swap
  for (const f of ['tls.crt', 'tls.key']) {
    try {
      symlinkSync(`..data/${f}`, join(mount, f));
    } catch {
      // already linked through ..data
    }
  }
}

const call = (port: number, ca: string, path: string, body?: string) => callWebhook(port, ca, body === undefined ? 'GET' : 'POST', path, body);

const pod: Json = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { generateName: 'web-', namespace: 'demo', labels: { 'wren.io/inject': 'enabled' } },
  spec: { serviceAccountName: 'web', containers: [{ name: 'app', image: 'web:1', ports: [{ containerPort: 8080 }] }] },
};
const review = (uid: string) =>
  JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: { uid, kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, operation: 'CREATE', namespace: 'demo', object: pod },
  });

async function admit(port: number, ca: string, uid: string): Promise<{ pod: Json; subject: string }> {
  const r = await call(port, ca, '/inject', review(uid));
  expect(r.status).toBe(200);
  expect(r.json).toMatchObject({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, allowed: true, patchType: 'JSONPatch' } });
  const ops = JSON.parse(Buffer.from(r.json!.response.patch, 'base64').toString('utf8'));
  return { pod: fjp.applyPatch(structuredClone(pod), ops, true, false).newDocument, subject: r.subject };
}

async function until(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'wren-webhook-listener-'));
});

afterAll(async () => {
  await Promise.all(open.map((w) => w.close()));
  rmSync(dir, { recursive: true, force: true });
});

test('splitListen', () => {
  expect(splitListen('0.0.0.0:15017')).toEqual({ host: '0.0.0.0', port: 15017 });
  expect(splitListen('[::]:443')).toEqual({ host: '::', port: 443 });
  for (const bad of ['15017', 'host:', ':80', 'a:99999', '[::]']) expect(() => splitListen(bad)).toThrow(/HOST:PORT/);
});

test('serves AdmissionReviews over HTTPS and picks up a rotated Secret without a restart', async () => {
  const mount = join(dir, 'rotate');
  const v1 = makeCert('v1');
  const v2 = makeCert('v2');
  writeSecretVolume(mount, 'v1', v1);
  const lines: string[] = [];
  const wh = await startInjectorWebhook({
    listen: '127.0.0.1:0', certFile: join(mount, 'tls.crt'), keyFile: join(mount, 'tls.key'),
    reloadIntervalMs: 50, inject: { nativeSidecars: false }, logger: createLogger({ sink: (l) => lines.push(l) }),
  });
  open.push(wh);
  expect(wh.listening).toBe(true);
  expect(wh.port).toBeGreaterThan(0);
  expect(await wh.whenListening()).toBe(wh.port);

  const first = await admit(wh.port, v1.cert, 'rot-1');
  expect(first.subject).toBe('v1');
  // The inject options reach the injector: classic mode puts the proxy first with a postStart await.
  expect(first.pod.spec.containers.map((c: Json) => c.name)).toEqual(['wren-proxy', 'app']);
  expect(first.pod.spec.containers[0].lifecycle.postStart.exec.command).toEqual(expect.arrayContaining(['proxy', 'await', '--admin-port', '15000']));

  // cert-manager rotates the Secret; kubelet swaps ..data. New handshakes get v2.
  writeSecretVolume(mount, 'v2', v2);
  const swapped = await until(async () => (await call(wh.port, v2.cert, '/healthz').catch(() => ({ subject: '' }))).subject === 'v2', 5000);
  expect(swapped).toBe(true);
  const second = await admit(wh.port, v2.cert, 'rot-2');
  expect(second.subject).toBe('v2');
  // A client still pinned to the old certificate is now refused: the old one is really gone.
  await expect(call(wh.port, v1.cert, '/healthz')).rejects.toThrow(/self[- ]signed|unable to verify|certificate/i);
  expect(lines.some((l) => JSON.parse(l).msg === 'webhook certificate reloaded' && l.includes('O=v2'))).toBe(true);
  expect(await wh.reload()).toBe(false); // nothing changed since
});

test('a mismatched certificate/key pair is refused and the good certificate keeps serving', async () => {
  const mount = join(dir, 'mismatch');
  const good = makeCert('good');
  const other = makeCert('other');
  writeSecretVolume(mount, 'a', good);
  const lines: string[] = [];
  const wh = await startInjectorWebhook({
    listen: '127.0.0.1:0', certFile: join(mount, 'tls.crt'), keyFile: join(mount, 'tls.key'),
    reloadIntervalMs: 60_000, logger: createLogger({ sink: (l) => lines.push(l) }),
  });
  open.push(wh);
  writeSecretVolume(mount, 'b', { cert: other.cert, key: good.key }); // half-rotated: new cert, old key
  expect(await wh.reload()).toBe(false);
  expect((await admit(wh.port, good.cert, 'mm-1')).subject).toBe('good');
  const warn = lines.map((l) => JSON.parse(l)).find((r) => r.msg.startsWith('webhook certificate files are not a usable pair'));
  expect(warn).toMatchObject({ level: 'warn' });
  // Once the pair is consistent again it is installed.
  writeSecretVolume(mount, 'c', other);
  expect(await wh.reload()).toBe(true);
  expect((await admit(wh.port, other.cert, 'mm-2')).subject).toBe('other');
});

test('an optional Secret created after start: the webhook starts listening when the files appear', async () => {
  const mount = join(dir, 'late');
  const reserve = await startInjectorWebhook({ listen: '127.0.0.1:0', certFile: join(dir, 'none.crt'), keyFile: join(dir, 'none.key'), logger: silentLogger });
  expect(reserve.listening).toBe(false);
  expect(reserve.port).toBe(0);
  await reserve.close();

  const lines: string[] = [];
  const wh = await startInjectorWebhook({
    listen: '127.0.0.1:0', certFile: join(mount, 'tls.crt'), keyFile: join(mount, 'tls.key'),
    reloadIntervalMs: 50, logger: createLogger({ sink: (l) => lines.push(l) }),
  });
  open.push(wh);
  expect(wh.listening).toBe(false);
  expect(lines.map((l) => JSON.parse(l).msg)).toContain('webhook certificate not there yet; the webhook starts when it appears');
  const late = makeCert('late');
  writeSecretVolume(mount, 'v1', late);
  const port = await wh.whenListening();
  expect(port).toBeGreaterThan(0);
  expect((await admit(port, late.cert, 'late-1')).subject).toBe('late');
});

test('a certificate the API server would refuse (expired while loaded, or not naming the Service) is served but warned about, once per certificate and problem', async () => {
  const mount = join(dir, 'dated');
  const good = makeCert('dated');
  writeSecretVolume(mount, 'v1', good);
  const lines: string[] = [];
  let wall = Date.now();
  const clock = { ...systemClock, wallNow: () => wall };
  const wh = await startInjectorWebhook({
    listen: '127.0.0.1:0', certFile: join(mount, 'tls.crt'), keyFile: join(mount, 'tls.key'),
    reloadIntervalMs: 60_000, clock, logger: createLogger({ sink: (l) => lines.push(l) }),
  });
  open.push(wh);
  const warnings = () => lines.map((l) => JSON.parse(l)).filter((r) => r.level === 'warn').map((r) => r.msg as string);
  expect(warnings()).toEqual([]);
  // Two days later the one-day certificate has expired and cert-manager has not renewed it.
  wall += 2 * 86_400_000;
  expect(await wh.reload()).toBe(false);
  expect(await wh.reload()).toBe(false);
  expect(warnings()).toEqual([expect.stringMatching(/^webhook certificate expired at .*: the API server refuses it, so pods that ask for the mesh are refused \(failurePolicy Fail; with Ignore they start without a proxy\)$/)]);
  // A certificate for another name (the wrong Service, or an IP only) is installed, and warned about.
  const crt = join(dir, 'other-name.crt');
  const key = join(dir, 'other-name.key');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=injector/O=other-name', '-addext', 'subjectAltName=DNS:injector.example', '-keyout', key, '-out', crt,
  ], { stdio: 'pipe' });
  // The clock is read after openssl: its notBefore is the second openssl ran in, which is
  // later than a clock read before it when the call crosses a second ("not valid before").
  wall = Date.now();
  writeSecretVolume(mount, 'v2', { cert: readFileSync(crt, 'utf8'), key: readFileSync(key, 'utf8') });
  expect(await wh.reload()).toBe(true);
  expect(warnings()[1]).toBe(`webhook certificate does not name ${HOST} (subjectAltName DNS:injector.example): the API server refuses it, so pods that ask for the mesh are refused (failurePolicy Fail; with Ignore they start without a proxy)`);
  expect(warnings()).toHaveLength(2);
  // The name only in the subject CN: Go's x509 (the API server) ignores the CN since Go 1.15.
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', `/CN=${HOST}/O=cn-only`, '-keyout', key, '-out', crt,
  ], { stdio: 'pipe' });
  wall = Date.now();
  writeSecretVolume(mount, 'v3', { cert: readFileSync(crt, 'utf8'), key: readFileSync(key, 'utf8') });
  expect(await wh.reload()).toBe(true);
  expect(warnings()[2]).toBe(`webhook certificate does not name ${HOST} (subjectAltName none): the API server refuses it, so pods that ask for the mesh are refused (failurePolicy Fail; with Ignore they start without a proxy)`);
  expect(warnings()).toHaveLength(3);
});

test('start fails loudly on a broken pair or a taken port', async () => {
  const a = makeCert('a');
  const b = makeCert('b');
  writeFileSync(join(dir, 'bad.crt'), a.cert);
  writeFileSync(join(dir, 'bad.key'), b.key);
  await expect(startInjectorWebhook({ listen: '127.0.0.1:0', certFile: join(dir, 'bad.crt'), keyFile: join(dir, 'bad.key'), logger: silentLogger })).rejects.toThrow(
    /not a usable pair/,
  );
  writeFileSync(join(dir, 'ok.crt'), a.cert);
  writeFileSync(join(dir, 'ok.key'), a.key);
  const wh = await startInjectorWebhook({ listen: '127.0.0.1:0', certFile: join(dir, 'ok.crt'), keyFile: join(dir, 'ok.key'), logger: silentLogger });
  open.push(wh);
  await expect(startInjectorWebhook({ listen: `127.0.0.1:${wh.port}`, certFile: join(dir, 'ok.crt'), keyFile: join(dir, 'ok.key'), logger: silentLogger })).rejects.toThrow(/EADDRINUSE/);
  await wh.close();
  expect(wh.listening).toBe(false);
});
