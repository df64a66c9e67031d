import { readFileSync } from 'node:fs';
import { connect, getCiphers, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';

/**
 * `wren tls-scan HOST:PORT`: a scriptable security check of a TLS listener (the inbound
 * port), done with Node's own TLS client so it runs wherever the proxy runs. It checks
 * what testssl.sh would flag for an mTLS-only HTTP/2 listener:
 *  - protocol versions: TLS 1.0 and 1.1 refused, 1.2 and 1.3 accepted;
 *  - cipher suites: every TLS 1.2 suite this OpenSSL knows is offered on its own; only
 *    forward-secret AEAD suites (ECDHE with GCM or ChaCha20-Poly1305) may be accepted;
 *  - client authentication: no certificate, a certificate from another CA, and an
 *    expired one are all refused (STRICT);
 *  - renegotiation: refused (RFC 7540 §9.2.1 forbids it under HTTP/2);
 *  - ALPN: a client offering only protocols the listener does not speak is refused in the
 *    handshake (RFC 7301 §3.2, no_application_protocol), not served something it did not
 *    ask for. (The inbound port speaks h2, http/1.1 and wren-mux: docs/configuration.md,
 *    "Between sidecars"; an http/1.1-only client is accepted by design.)
 * "Accepted" means the server answered our HTTP/2 preface with its SETTINGS frame: with
 * TLS 1.3 a client finishes its handshake before the server has checked the client's
 * certificate, so a completed handshake alone proves nothing.
 */
export interface ClientCert {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface ScanOptions {
  readonly host: string;
  readonly port: number;
  /** Trust anchors for the server's certificate. */
  readonly caPem: string;
  /** A certificate the server should accept. */
  readonly client: ClientCert;
  /** Optional negative probes: these must be refused. */
  readonly foreignClient?: ClientCert;
  readonly expiredClient?: ClientCert;
  readonly timeoutMs?: number;
}

export interface Finding {
  readonly check: string;
  readonly expected: 'accepted' | 'refused';
  readonly result: 'accepted' | 'refused' | 'untestable';
  readonly detail: string;
  readonly ok: boolean;
}

type ProbeResult = { result: 'accepted' | 'refused' | 'untestable'; detail: string; socket?: TLSSocket };

const H2_PREFACE = Buffer.concat([
  Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
  Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]), // empty SETTINGS frame
]);
/** Client-side errors: our OpenSSL could not even offer what we asked for. */
const LOCAL_ERRORS = /NO_PROTOCOLS_AVAILABLE|NO_CIPHERS_AVAILABLE|NO_CIPHER_MATCH|unsupported protocol|no cipher match|NO_SUITABLE_SIGNATURE/i;

/**
 * One connection with `extra`: accepted once the server answers the HTTP/2 preface with
 * SETTINGS, or, with `handshakeOnly`, once the TLS handshake completes (what an ALPN check
 * asks: the protocol is settled there).
 */
function probe(o: ScanOptions, extra: ConnectionOptions, keepOpen = false, handshakeOnly = false): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: ProbeResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (!keepOpen || r.result !== 'accepted') socket.destroy();
      resolve(r);
    };
    const socket = connect({ host: o.host, port: o.port, ca: o.caPem, ALPNProtocols: ['h2'], servername: undefined, checkServerIdentity: () => undefined, ...extra });
    const timer = setTimeout(() => finish({ result: 'refused', detail: 'no answer (timeout)' }), o.timeoutMs ?? 2000);
    socket.once('secureConnect', () => {
      if (handshakeOnly) finish({ result: 'accepted', detail: `${socket.getProtocol()} alpn=${socket.alpnProtocol || 'none'}` });
      else socket.write(H2_PREFACE);
    });
    socket.once('data', (d: Buffer) => {
      // Frame type 4 = SETTINGS (RFC 7540 §6.5): the server accepted us as an HTTP/2 peer.
      if (d.length >= 9 && d[3] === 4) finish({ result: 'accepted', detail: `${socket.getProtocol()} ${socket.getCipher()?.name} alpn=${socket.alpnProtocol}`, socket });
      else finish({ result: 'refused', detail: 'unexpected first frame' });
    });
    socket.once('error', (e: Error & { code?: string }) => {
      const msg = `${e.code ?? ''} ${e.message}`.trim();
      finish(LOCAL_ERRORS.test(msg) && !socket.getProtocol() ? { result: 'untestable', detail: `this client cannot offer it: ${msg}` } : { result: 'refused', detail: msg });
    });
    socket.once('close', () => finish({ result: 'refused', detail: 'connection closed' }));
  });
}

/** ALPN is settled in the handshake: a listener that refuses the protocols offered aborts it with alert 120, so "accepted" here is a completed handshake. */
const UNKNOWN_ALPN = 'spdy/3.1';
const read = (f: string) => readFileSync(f, 'utf8');


const finding = (check: string, expected: 'accepted' | 'refused', r: ProbeResult): Finding => ({
  check, expected, result: r.result, detail: r.detail, ok: r.result === expected || (expected === 'refused' && r.result === 'untestable'),
});

/** Forward secrecy and an AEAD: the only TLS 1.2 suites we accept (Mozilla "intermediate" minus DHE). */
export const isStrongTls12Suite = (name: string): boolean => /^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/i.test(name);

export async function scanTls(o: ScanOptions): Promise<Finding[]> {
  const cert = { cert: o.client.certPem, key: o.client.keyPem };
  const out: Finding[] = [];
  const legacy = { ciphers: 'ALL:@SECLEVEL=0' };
  for (const [v, expected] of [['TLSv1', 'refused'], ['TLSv1.1', 'refused'], ['TLSv1.2', 'accepted'], ['TLSv1.3', 'accepted']] as const)
    out.push(finding(`protocol ${v}`, expected, await probe(o, { ...cert, minVersion: v, maxVersion: v, ...(expected === 'refused' ? legacy : {}) })));
  // TLS 1.2 suites one by one. PSK and SRP suites need pre-shared secrets the listener does not have.
  const suites = getCiphers().filter((c) => !c.startsWith('tls_') && !/psk|srp/.test(c)).map((c) => c.toUpperCase());
  const accepted: string[] = [];
  for (const s of suites) {
    const r = await probe(o, { ...cert, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: `${s}:@SECLEVEL=0` });
    if (r.result === 'accepted') accepted.push(s);
  }
  const weak = accepted.filter((s) => !isStrongTls12Suite(s));
  out.push({ check: `TLS 1.2 cipher suites (${suites.length} offered one at a time)`, expected: 'refused', result: weak.length ? 'accepted' : 'refused', detail: `accepted: ${accepted.join(' ') || 'none'}${weak.length ? `; WEAK: ${weak.join(' ')}` : ''}`, ok: weak.length === 0 && accepted.length > 0 });
  for (const v of ['TLSv1.2', 'TLSv1.3'] as const) out.push(finding(`no client certificate (${v})`, 'refused', await probe(o, { minVersion: v, maxVersion: v })));
  if (o.foreignClient) out.push(finding('client certificate from another CA', 'refused', await probe(o, { cert: o.foreignClient.certPem, key: o.foreignClient.keyPem })));
  if (o.expiredClient) out.push(finding('expired client certificate', 'refused', await probe(o, { cert: o.expiredClient.certPem, key: o.expiredClient.keyPem })));
  out.push(finding(`ALPN ${UNKNOWN_ALPN} only (not spoken)`, 'refused', await probe(o, { ...cert, ALPNProtocols: [UNKNOWN_ALPN] }, false, true)));
  out.push(await renegotiation(o, cert));
  return out;
}

/** A TLS 1.2 session that was accepted, then asks to renegotiate; the server must refuse. */
async function renegotiation(o: ScanOptions, cert: ConnectionOptions): Promise<Finding> {
  const first = await probe(o, { ...cert, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }, true);
  if (first.result !== 'accepted' || !first.socket) return { check: 'client-initiated renegotiation', expected: 'refused', result: 'untestable', detail: `no TLS 1.2 session: ${first.detail}`, ok: false };
  const s = first.socket;
  const r = await new Promise<ProbeResult>((resolve) => {
    const t = setTimeout(() => resolve({ result: 'accepted', detail: 'the session stayed open after renegotiating' }), o.timeoutMs ?? 2000);
    const refused = (detail: string) => {
      clearTimeout(t);
      resolve({ result: 'refused', detail });
    };
    s.once('close', () => refused('server closed the connection'));
    s.once('error', (e) => refused(e.message));
    const started = s.renegotiate({ rejectUnauthorized: true }, (e) => {
      if (e) refused(e.message);
      else {
        // The handshake completed: the server allowed it, unless it closes right after.
        s.write(Buffer.from([0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8])); // PING
      }
    });
    if (!started) refused('renegotiation could not start');
  });
  s.destroy();
  return finding('client-initiated renegotiation', 'refused', r);
}

export const TLS_SCAN_USAGE = `Usage: wren tls-scan HOST:PORT --ca FILE --cert FILE --key FILE [--foreign-cert FILE --foreign-key FILE]
                     [--expired-cert FILE --expired-key FILE] [--json]

Probes a Wren inbound (mTLS) port: TLS versions, every TLS 1.2 cipher suite one at a
time, client-certificate enforcement, renegotiation and ALPN. Exits 1 when a check fails,
2 on bad usage.
  --ca FILE                         trust anchors that verify the listener's certificate
  --cert FILE, --key FILE           a workload certificate the listener should accept
  --foreign-cert, --foreign-key     one from another CA, which it must refuse (optional)
  --expired-cert, --expired-key     an expired one from its own CA, which it must refuse (optional)
  --json                            the findings as JSON
  -h, --help                        show this help
`;

export async function tlsScanCommand(argv: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: {
      ca: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' }, 'foreign-cert': { type: 'string' }, 'foreign-key': { type: 'string' },
      'expired-cert': { type: 'string' }, 'expired-key': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    } });
  } catch (e) {
    err(`wren tls-scan: ${(e as Error).message}\n\n${TLS_SCAN_USAGE}`);
    return 2;
  }
  const { values: v, positionals } = parsed;
  if (v.help) {
    out(TLS_SCAN_USAGE);
    return 0;
  }
  const m = /^(.+):(\d+)$/.exec(positionals[0] ?? '');
  if (!m || !v.ca || !v.cert || !v.key) {
    err(`wren tls-scan: HOST:PORT, --ca, --cert and --key are required\n\n${TLS_SCAN_USAGE}`);
    return 2;
  }
  // A certificate without its key (or the reverse) would silently skip its check.
  for (const p of ['foreign', 'expired'] as const) {
    if (Boolean(v[`${p}-cert`]) !== Boolean(v[`${p}-key`])) {
      err(`wren tls-scan: --${p}-cert and --${p}-key go together\n\n${TLS_SCAN_USAGE}`);
      return 2;
    }
  }
  const pair = (certFile: string | undefined, keyFile: string | undefined) => (certFile && keyFile ? { certPem: read(certFile), keyPem: read(keyFile) } : undefined);
  let options: ScanOptions;
  try {
    options = {
      host: m[1], port: Number(m[2]), caPem: read(v.ca), client: { certPem: read(v.cert), keyPem: read(v.key) },
      foreignClient: pair(v['foreign-cert'], v['foreign-key']), expiredClient: pair(v['expired-cert'], v['expired-key']),
    };
  } catch (e) {
    err(`wren tls-scan: ${(e as Error).message}\n`);
    return 2;
  }
  const findings = await scanTls(options);
  if (v.json) out(`${JSON.stringify(findings, null, 2)}\n`);
  else for (const f of findings) out(`${f.ok ? 'PASS' : 'FAIL'}  ${f.check.padEnd(48)} expected ${f.expected.padEnd(8)} got ${f.result.padEnd(10)} ${f.detail}\n`);
  return findings.every((f) => f.ok) ? 0 : 1;
}
