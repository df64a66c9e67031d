/**
 * Source of the two apps the pod e2e test (test/pod-netns-e2e.test.ts) runs inside its
 * network namespaces, as standalone ES modules: they run as plain `node FILE` under
 * other UIDs, so they load grpc-js from the repository's node_modules by absolute path.
 */
import { join } from 'node:path';

/**
 * The web app: HTTP on :8080, gRPC Echo on :9090, line-echo TCP on :7070 and :7171, and
 * HTTP on 127.0.0.1:8181 only (a port that must stay private to its pod). It
 * reports what it saw (its UID, the peer address, x-forwarded-client-cert) and adds the
 * secret `reply` marker (argv[2]) to every answer except the plaintext skip port's.
 */
export const serverAppSource = (root: string, proto: string): string => `
import { createServer } from 'node:http';
import { createServer as createTcp } from 'node:net';
import { createRequire } from 'node:module';
const require = createRequire(${JSON.stringify(join(root, 'package.json'))});
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
const reply = process.argv[2];
const uid = process.getuid();
const http = createServer((req, res) => {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ app: 'web', uid, method: req.method, url: req.url, host: req.headers.host, marker: req.headers['x-marker'] ?? null,
      body, xfcc: req.headers['x-forwarded-client-cert'] ?? null, from: req.socket.remoteAddress, reply }));
  });
});
const tcp = (port) => createTcp((s) => {
  let buf = '';
  s.on('error', () => {});
  s.on('data', (d) => {
    buf += d;
    // The skip port's answer travels in plaintext, so it must not carry the secret reply marker.
    if (buf.includes('\\n')) s.end(JSON.stringify({ port, uid, from: s.remoteAddress, got: buf.trim(), reply: port === 7171 ? null : reply }) + '\\n');
  });
});
const { Echo } = grpc.loadPackageDefinition(loader.loadSync(${JSON.stringify(proto)}, { keepCase: false, longs: String, defaults: true })).wren.test;
const g = new grpc.Server();
g.addService(Echo.service, {
  Unary(call, cb) {
    cb(null, { message: 'echo ' + call.request.message + ' reply=' + reply, caller: String(call.metadata.get('x-forwarded-client-cert')[0] ?? '') });
  },
});
await new Promise((res, rej) => g.bindAsync('0.0.0.0:9090', grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
const listen = (srv, port) => new Promise((res, rej) => { srv.once('error', rej); srv.listen(port, '0.0.0.0', res); });
// A port the app binds to localhost only (a debug or admin endpoint): private to the pod, mesh or not.
const local = createServer((req, res) => res.end(JSON.stringify({ app: 'web-localhost-only', reply })));
await Promise.all([listen(http, 8080), listen(tcp(7070), 7070), listen(tcp(7171), 7171), new Promise((res, rej) => { local.once('error', rej); local.listen(8181, '127.0.0.1', res); })]);
console.log('ready');
`;

/**
 * The mesh-unaware client: plain sockets to an IP and port, nothing else. argv: target
 * pod IP, ClusterIP, markers JSON, target pod IPv6 address; prints one JSON line with every call's outcome.
 */
export const clientAppSource = (root: string, proto: string): string => `
import { request } from 'node:http';
import { connect } from 'node:net';
import { createRequire } from 'node:module';
const require = createRequire(${JSON.stringify(join(root, 'package.json'))});
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
const [, , target, vip, marksJson, target6] = process.argv;
const m = JSON.parse(marksJson);
const parse = (t) => { try { return JSON.parse(t); } catch { return t; } };
const http = (host, port, marker, body) => new Promise((resolve) => {
  const req = request({ host, port, path: '/orders', method: 'POST', agent: false, headers: { 'x-marker': marker, 'content-type': 'text/plain' }, timeout: 5000 }, (res) => {
    let text = '';
    res.on('data', (d) => (text += d));
    res.on('end', () => resolve({ status: res.statusCode, proxyError: res.headers['wren-proxy-error'] ?? null, body: parse(text) }));
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => resolve({ error: e.code ?? e.message }));
  req.end(body);
});
const tcp = (host, port, line) => new Promise((resolve) => {
  const s = connect({ host, port, timeout: 5000 });
  let text = '';
  s.on('connect', () => s.write(line + '\\n'));
  s.on('data', (d) => (text += d));
  s.on('end', () => resolve({ reply: parse(text.trim()) }));
  s.on('timeout', () => { s.destroy(); resolve({ error: 'timeout', partial: text }); });
  s.on('error', (e) => resolve({ error: e.code ?? e.message }));
});
const grpcCall = (host, port, message) => new Promise((resolve) => {
  const { Echo } = grpc.loadPackageDefinition(loader.loadSync(${JSON.stringify(proto)}, { keepCase: false, longs: String, defaults: true })).wren.test;
  const c = new Echo(host + ':' + port, grpc.credentials.createInsecure());
  c.Unary({ message }, { deadline: Date.now() + 5000 }, (err, res) => {
    c.close();
    resolve(err ? { error: err.code + ' ' + err.details } : { message: res.message, caller: res.caller });
  });
});
const out = { uid: process.getuid() };
out.http = await http(target, 8080, m.httpHeader, m.httpBody);
out.vip = await http(vip, 80, m.vip, m.vip);
out.grpc = await grpcCall(target, 9090, m.grpc);
out.tcp = await tcp(target, 7070, m.tcp);
out.control = await tcp(target, 7171, m.control);
// The same pod over IPv6: the client's sidecar gets it on [::1]:15001, the web sidecar on [::]:15006.
out.http6 = await http(target6, 8080, m.http6, m.http6);
out.tcp6 = await tcp(target6, 7070, m.tcp6);
out.localOnly = await http(target, 8181, 'local', 'local');
console.log(JSON.stringify(out));
`;
