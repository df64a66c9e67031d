import { Agent, request as httpRequest } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as h2connect } from 'node:http2';
import { once } from 'node:events';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { startLoopbackPods, type LoopbackPods } from './helpers/loopback-pods.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Traffic addressed to a pod IP (headless Services, StatefulSets) goes to that pod, over
 * mTLS to its sidecar, for HTTP and opaque TCP; the Service name is balanced. Three pods,
 * each with its own loopback address, app and sidecar; the client's original
 * destination is injected by source address (client i → pod i), so one test run can
 * address every pod at once without a race.
 */
const pki = testPki();
const N = 3;
let pods: LoopbackPods, client: Proxy;
const dstBySource = new Map<string, { address: string; port: number }>();

beforeAll(async () => {
  pods = await startLoopbackPods(pki, { count: N, prefix: 'db', serviceAccount: 'db' });
  for (let i = 0; i < N; i++) {
    dstBySource.set(pods.clientIp(i + 1), { address: pods.pods[i].ip, port: pods.httpPort });
    dstBySource.set(pods.clientIp(i + 11), { address: pods.pods[i].ip, port: pods.tcpPort });
    dstBySource.set(pods.clientIp(i + 21), { address: pods.pods[i].ip, port: pods.h2Port });
  }
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      pods.service('db', {
        // Round robin: this file is about where pod-IP and Service traffic lands, not about
        // latency. Under the default peak-EWMA one slow early answer (a loaded CI machine)
        // keeps a pod out of a short burst until its cost decays (10 s), as in Linkerd.
        loadBalancer: { kind: 'round-robin' },
        retry: { retryOn: ['5xx'], attempts: 2, backoffBaseMs: '1ms' },
        outlierDetection: { maxEjectionPercent: 100, intervalMs: '1h' },
      }),
    ],
    originalDst: (s: Socket) => dstBySource.get((s.remoteAddress ?? '').replace(/^::ffff:/, '')),
  });
});

afterAll(async () => {
  await client.close();
  await pods.close();
});

interface Answer {
  status: number;
  pod: string;
  xfcc: string | null;
  attempt: string | null;
}

function get(agent: Agent | undefined, host: string, path = '/', localAddress?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, agent, localAddress, headers: { host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        const j = JSON.parse(body) as Omit<Answer, 'status'>;
        resolve({ status: res.statusCode ?? 0, pod: j.pod, xfcc: j.xfcc, attempt: j.attempt });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

async function many(n: number, concurrency: number, one: () => Promise<Answer>): Promise<Answer[]> {
  const out: Answer[] = [];
  let started = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (started < n) {
        started++;
        out.push(await one());
      }
    }),
  );
  return out;
}

/** One TCP connection from `localAddress`: the pod's greeting, then an echo of `msg`. */
function tcpExchange(localAddress: string, msg: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: '127.0.0.1', port: client.outboundPort, localAddress });
    let got = '';
    s.on('data', (d) => {
      got += d;
      if (got.endsWith(`${msg}\n`)) s.end();
    });
    s.once('data', () => s.write(`${msg}\n`));
    s.on('close', () => resolve(got));
    s.on('error', reject);
  });
}

const headless = () => `db.default.svc.cluster.local:${pods.httpPort}`;

test('300 HTTP requests addressed to each pod IP all land on that pod, over mTLS with its identity checked', async () => {
  for (let i = 0; i < N; i++) {
    const agent = new Agent({ keepAlive: true, maxSockets: 8, localAddress: pods.clientIp(i + 1) });
    // Host names the headless service, as a client that resolved it to this pod sends it.
    const answers = await many(300, 8, () => get(agent, headless()));
    agent.destroy();
    expect(answers).toHaveLength(300);
    expect(new Set(answers.map((a) => `${a.status} ${a.pod}`))).toEqual(new Set([`200 db-${i}`]));
    expect(answers[0].xfcc).toContain(`URI=${client.tls.spiffeId}`);
  }
  // Without the original destination the Host alone names the pod IP: same result.
  expect((await get(undefined, `${pods.pods[2].ip}:${pods.httpPort}`)).pod).toBe('db-2');
  const clusters = (await (await fetch(`http://127.0.0.1:${client.adminPort}/clusters`)).json()) as Record<string, { endpoints: { address: string; successes: number }[] }>;
  const eps = clusters[`db.default:${pods.httpPort}`].endpoints;
  expect(eps.map((e) => e.address)).toEqual(pods.pods.map((p) => p.ip));
  expect(eps.map((e) => e.successes >= 300)).toEqual([true, true, true]);
});

test('HTTP/2 (prior knowledge) addressed to a pod IP lands on that pod too', async () => {
  for (let i = 0; i < N; i++) {
    const localAddress = pods.clientIp(i + 21);
    const session = h2connect(`http://127.0.0.1:${client.outboundPort}`, { createConnection: () => netConnect({ host: '127.0.0.1', port: client.outboundPort, localAddress }) });
    const pods_ = await Promise.all(
      Array.from({ length: 30 }, async () => {
        const req = session.request({ ':path': '/', ':authority': `db.default.svc.cluster.local:${pods.h2Port}` });
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (d) => (body += d));
        await once(req, 'end');
        return (JSON.parse(body) as { pod: string }).pod;
      }),
    );
    session.close();
    expect(new Set(pods_)).toEqual(new Set([`db-${i}`]));
  }
});

test('an HTTP/1.1 upgrade (WebSocket-style) addressed to a pod IP lands on that pod', async () => {
  const upgrade = (localAddress: string) =>
    new Promise<string>((resolve, reject) => {
      const s = netConnect({ host: '127.0.0.1', port: client.outboundPort, localAddress }, () =>
        s.write(`GET /ws HTTP/1.1\r\nhost: ${headless()}\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n`),
      );
      let got = '';
      s.on('data', (d) => {
        got += d;
        if (got.includes('\r\n\r\n')) s.end();
      });
      s.on('close', () => resolve(/^x-pod: (\S+)/im.exec(got)?.[1] ?? got));
      s.on('error', reject);
    });
  for (let i = 0; i < N; i++) {
    const got = await Promise.all(Array.from({ length: 10 }, () => upgrade(pods.clientIp(i + 1))));
    expect(new Set(got)).toEqual(new Set([`db-${i}`]));
  }
});

test('30 TCP connections addressed to each pod IP all land on that pod', async () => {
  for (let i = 0; i < N; i++) {
    const before = pods.pods.map((p) => p.tcpHits.count);
    const got = await Promise.all(Array.from({ length: 30 }, (_, k) => tcpExchange(pods.clientIp(i + 11), `ping ${k}`)));
    got.forEach((g, k) => expect(g).toBe(`db-${i}\nping ${k}\n`));
    expect(pods.pods.map((p, j) => p.tcpHits.count - before[j])).toEqual(pods.pods.map((_, j) => (j === i ? 30 : 0)));
  }
  const metrics = await (await fetch(`http://127.0.0.1:${client.adminPort}/metrics`)).text();
  expect(metrics).toMatch(/istio_tcp_connections_opened_total\{reporter="source",[^}]*destination_service="db.default.svc.cluster.local",[^}]*\} (9\d|\d{3,})/);
});

test('a TCP client that half-closes after its request still gets the reply (the FIN is relayed)', async () => {
  const got = await new Promise<string>((resolve, reject) => {
    const s = netConnect({ host: '127.0.0.1', port: client.outboundPort, localAddress: pods.clientIp(13) }, () => s.end('bye\n'));
    let data = '';
    s.on('data', (d) => (data += d));
    s.on('close', () => resolve(data));
    s.on('error', reject);
  });
  expect(got).toBe('db-2\nbye\n');
});

test('requests to the Service name spread over the three pods', async () => {
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const answers = await many(300, 8, () => get(agent, `db:${pods.httpPort}`));
  agent.destroy();
  const per = new Map<string, number>();
  for (const a of answers) per.set(a.pod, (per.get(a.pod) ?? 0) + 1);
  expect([...per.keys()].sort()).toEqual(['db-0', 'db-1', 'db-2']);
  for (const n of per.values()) expect(n).toBeGreaterThanOrEqual(30);
});

test('retries of a pinned request stay on that pod; an ejected pod still gets the traffic addressed to it', async () => {
  const agent = new Agent({ keepAlive: true, maxSockets: 1, localAddress: pods.clientIp(2) });
  const before = pods.pods.map((p) => p.httpHits.count);
  const failed = await get(agent, headless(), '/status/503');
  expect(failed).toMatchObject({ status: 503, pod: 'db-1', attempt: '3' });
  expect(pods.pods.map((p, j) => p.httpHits.count - before[j])).toEqual([0, 3, 0]);
  // Three more 5xx: five in a row eject db-1 for balanced traffic.
  expect((await get(agent, headless(), '/status/503')).pod).toBe('db-1');
  const clusters = (await (await fetch(`http://127.0.0.1:${client.adminPort}/clusters`)).json()) as Record<string, { endpoints: { address: string; health: string }[] }>;
  expect(clusters[`db.default:${pods.httpPort}`].endpoints.map((e) => e.health)).toEqual(['healthy', 'ejected', 'healthy']);
  const balanced = await many(60, 4, () => get(undefined, `db:${pods.httpPort}`));
  expect(balanced.some((a) => a.pod === 'db-1')).toBe(false);
  // The client addressed db-1 itself: it goes there (Linkerd and Istio do the same).
  expect(await get(agent, headless())).toMatchObject({ status: 200, pod: 'db-1' });
  agent.destroy();
});
