import type { ProxyStatusRow } from '../control-plane/discovery/proxy-status.js';
import { ageText, formatProxyStatus } from './proxy-status.js';

const NOW = Date.parse('2026-12-03T10:00:00Z');

function row(pod: string, over: Partial<ProxyStatusRow>): ProxyStatusRow {
  return {
    id: 1, pod, namespace: 'shop', identity: `spiffe://td/ns/shop/sa/${pod}`, authenticatedAs: null, proxyVersion: '0.1.0', status: 'SYNCED',
    ackedVersion: 'v3', sentVersion: 'v3', latestVersion: 'v3', pendingForMs: null, nacks: 0, nack: null, trustStateAcked: null, cert: null,
    connectedSince: new Date(NOW - 5_000).toISOString(), connectedForMs: 5_000, lastSeenAgoMs: 2_000, ...over,
  };
}

test('ageText prints an age as kubectl prints AGE', () => {
  const s = 1000;
  const cases: [number, string][] = [
    [-1500, '0s'], [-2500, '<invalid>'], [0, '0s'], [5 * s, '5s'], [119 * s, '119s'], [120 * s, '2m'], [200 * s, '3m20s'],
    [42 * 60 * s, '42m'], [179 * 60 * s, '179m'], [3 * 3600 * s, '3h'], [(5 * 3600 + 7 * 60) * s, '5h7m'], [20 * 3600 * s, '20h'],
    [(3 * 24 + 4) * 3600 * s, '3d4h'], [30 * 86400 * s, '30d'], [(2 * 365 + 10) * 86400 * s, '2y10d'], [9 * 365 * 86400 * s, '9y'],
  ];
  expect(cases.map(([ms]) => [ms, ageText(ms)])).toEqual(cases);
});

test('the table has CONNECTED (how long the stream has been up, by the control plane\'s clock) beside LAST SEEN', () => {
  const text = formatProxyStatus([{
    controlPlane: '127.0.0.1:15014', error: null,
    status: {
      latestVersion: 'v3', ready: true, proxies: [
        row('web-0', {}),
        row('api-0', { connectedForMs: 200_000, lastSeenAgoMs: 1_000 }),
        // The CLI's clock is an hour ahead of the control plane's: the control plane's count wins.
        row('db-0', { connectedSince: new Date(NOW - 3_600_000 - 14_400_000).toISOString(), connectedForMs: 14_400_000 }),
      ],
    },
  }], NOW);
  const lines = text.trimEnd().split('\n');
  expect(lines[0]).toMatch(/^NAME\s+STATUS\s+ACKED\s+SENT\s+CERT EXPIRES\s+ROOT\s+VERSION\s+CONNECTED\s+LAST SEEN\s+CONTROL PLANE$/);
  const col = lines[0].indexOf('CONNECTED');
  const cell = (l: string) => l.slice(col).split(/\s{2,}/)[0];
  expect(lines.slice(1).map((l) => [l.split(/\s+/)[0], cell(l)])).toEqual([['web-0.shop', '5s'], ['api-0.shop', '3m20s'], ['db-0.shop', '4h']]);
  expect(lines[1]).toMatch(/\s5s\s+2s ago\s+127\.0\.0\.1:15014$/);
});

test('what a proxy reports (its version, a NACK detail) is printed with its control characters escaped, never acted on by the terminal', () => {
  const evil = '0.1.0\x1b]0;pwned\x07\x1b[2J\x1b]52;c;Y3VybA==\x07';
  const text = formatProxyStatus([{
    controlPlane: '127.0.0.1:15014', error: null,
    status: { latestVersion: 'v3', ready: true, proxies: [row('web-0', { proxyVersion: evil, nack: { version: 'v3', detail: 'bad \x1b[31mred\u202e', agoMs: 0 } })] },
  }], NOW);
  // Nothing a terminal acts on but the table's own newlines.
  expect([...text].filter((c) => c !== '\n' && (c < ' ' || (c >= '\x7f' && c <= '\x9f') || c === '\u202e'))).toEqual([]);
  expect(text).toContain('0.1.0\\x1b]0;pwned\\x07\\x1b[2J');
  expect(text).toContain('NACKED version v3: bad \\x1b[31mred\\u202e');
});

test('a control plane older than connectedForMs: the age comes from connectedSince and the local clock', () => {
  const old = Object.fromEntries(Object.entries(row('web-0', { connectedSince: new Date(NOW - 45_000).toISOString() })).filter(([k]) => k !== 'connectedForMs'));
  const text = formatProxyStatus([{ controlPlane: 'cp', error: null, status: { latestVersion: 'v3', ready: true, proxies: [old as unknown as ProxyStatusRow] } }], NOW);
  expect(text).toMatch(/^web-0\.shop\s.*\s45s\s+2s ago\s+cp$/m);
});
