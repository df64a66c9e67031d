/**
 * Packet capture for the network-namespace tests: tcpdump writes classic pcap to stdout
 * (`-w -`), and this file reads it back (pcap file format: 24-byte global header, then
 * a 16-byte header per record; https://www.tcpdump.org/manpages/pcap-savefile.5.html)
 * down to TCP segments, reassembled per direction by sequence number so a test can look
 * at exactly what crossed the wire.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { SocketAddress } from 'node:net';

export interface TcpSegment {
  readonly src: string;
  readonly sport: number;
  readonly dst: string;
  readonly dport: number;
  readonly seq: number;
  readonly syn: boolean;
  readonly payload: Buffer;
}

/** One direction of one TCP connection, as bytes in order. */
export interface TcpStream {
  readonly src: string;
  readonly sport: number;
  readonly dst: string;
  readonly dport: number;
  readonly data: Buffer;
}

const LINKTYPE_ETHERNET = 1;
const LINKTYPE_LINUX_SLL = 113;

/** The link-layer frames of a pcap file, and its link type. */
export function parsePcap(buf: Buffer): { linkType: number; frames: Buffer[] } {
  if (buf.length < 24) throw new Error(`pcap: ${buf.length} bytes is shorter than the 24-byte header`);
  const magic = buf.readUInt32LE(0);
  let le: boolean;
  if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) le = true;
  else if (buf.readUInt32BE(0) === 0xa1b2c3d4 || buf.readUInt32BE(0) === 0xa1b23c4d) le = false;
  else throw new Error(`pcap: bad magic 0x${magic.toString(16)} (pcapng is not supported)`);
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const linkType = u32(20) & 0x0fffffff;
  const frames: Buffer[] = [];
  let off = 24;
  while (off + 16 <= buf.length) {
    const incl = u32(off + 8);
    if (off + 16 + incl > buf.length) break; // truncated last record (capture stopped mid-write)
    frames.push(buf.subarray(off + 16, off + 16 + incl));
    off += 16 + incl;
  }
  return { linkType, frames };
}

/** The text form of an IPv6 address (RFC 5952, as the kernel prints it). */
const ipv6Text = (b: Buffer): string => new SocketAddress({ address: [0, 2, 4, 6, 8, 10, 12, 14].map((i) => b.readUInt16BE(i).toString(16)).join(':'), family: 'ipv6' }).address;

/**
 * TCP segments over IPv4 and IPv6 in the frames (other protocols are skipped; IPv6
 * extension headers too: TCP must be the fixed header's next header, RFC 8200 section 3).
 */
export function tcpSegments(frames: readonly Buffer[], linkType: number): TcpSegment[] {
  const out: TcpSegment[] = [];
  for (const f of frames) {
    let ip: number;
    let type: number;
    if (linkType === LINKTYPE_ETHERNET) {
      if (f.length < 14) continue;
      [ip, type] = [14, f.readUInt16BE(12)];
    } else if (linkType === LINKTYPE_LINUX_SLL) {
      if (f.length < 16) continue;
      [ip, type] = [16, f.readUInt16BE(14)];
    } else throw new Error(`pcap: unsupported link type ${linkType}`);
    let tcp: number;
    let end: number;
    let src: string;
    let dst: string;
    if (type === 0x0800) {
      if (f.length < ip + 20 || f[ip] >> 4 !== 4 || f[ip + 9] !== 6) continue;
      tcp = ip + (f[ip] & 0x0f) * 4;
      // The IP total length, not the frame length: Ethernet pads short frames.
      end = Math.min(f.length, ip + f.readUInt16BE(ip + 2));
      src = [...f.subarray(ip + 12, ip + 16)].join('.');
      dst = [...f.subarray(ip + 16, ip + 20)].join('.');
    } else if (type === 0x86dd) {
      if (f.length < ip + 40 || f[ip] >> 4 !== 6 || f[ip + 6] !== 6) continue;
      tcp = ip + 40;
      end = Math.min(f.length, tcp + f.readUInt16BE(ip + 4));
      src = ipv6Text(f.subarray(ip + 8, ip + 24));
      dst = ipv6Text(f.subarray(ip + 24, ip + 40));
    } else continue;
    if (f.length < tcp + 20) continue;
    const dataOff = (f[tcp + 12] >> 4) * 4;
    out.push({
      src,
      dst,
      sport: f.readUInt16BE(tcp),
      dport: f.readUInt16BE(tcp + 2),
      seq: f.readUInt32BE(tcp + 4),
      syn: (f[tcp + 13] & 0x02) !== 0,
      payload: Buffer.from(f.subarray(tcp + dataOff, end)),
    });
  }
  return out;
}

/**
 * Per-direction byte streams: segments ordered by sequence number (relative to the SYN,
 * wrap-safe), retransmitted or overlapping bytes taken once.
 */
export function reassemble(segments: readonly TcpSegment[]): TcpStream[] {
  const flows = new Map<string, { s: TcpSegment; isn: number | undefined; segs: TcpSegment[] }>();
  for (const s of segments) {
    const key = `${s.src}:${s.sport}>${s.dst}:${s.dport}`;
    let f = flows.get(key);
    if (!f) flows.set(key, (f = { s, isn: undefined, segs: [] }));
    if (s.syn && f.isn === undefined) f.isn = s.seq;
    if (s.payload.length) f.segs.push(s);
  }
  const out: TcpStream[] = [];
  for (const { s, isn, segs } of flows.values()) {
    // Without a captured SYN, the first segment seen anchors the numbering.
    const base = isn !== undefined ? (isn + 1) >>> 0 : (segs[0]?.seq ?? 0);
    const rel = (seq: number) => (seq - base) >>> 0;
    const sorted = [...segs].sort((a, b) => rel(a.seq) - rel(b.seq));
    const parts: Buffer[] = [];
    let next = 0;
    for (const seg of sorted) {
      const start = rel(seg.seq);
      const endPos = start + seg.payload.length;
      if (endPos <= next) continue;
      parts.push(seg.payload.subarray(Math.max(0, next - start)));
      next = endPos;
    }
    out.push({ src: s.src, sport: s.sport, dst: s.dst, dport: s.dport, data: Buffer.concat(parts) });
  }
  return out;
}

export interface Capture {
  /** Stops tcpdump and returns everything it captured (raw frames and TCP streams). */
  stop(): Promise<{ frames: Buffer[]; segments: TcpSegment[]; streams: TcpStream[]; pcap: Buffer; droppedByKernel: number }>;
  readonly child: ChildProcess;
}

/**
 * Starts `tcpdump -i IFACE` inside network namespace `ns`, writing pcap to a pipe.
 * Resolves once tcpdump says it is listening, so no packet sent afterwards is missed.
 */
export function startCapture(ns: string, iface: string, filter = 'tcp'): Promise<Capture> {
  // -U/--immediate-mode: hand over every packet at once; -B 32768: a 32 MiB kernel buffer, so a
  // tcpdump a loaded machine schedules late drops nothing (the default 2 MiB dropped 4 packets once,
  // a fresh machine running other suites); -Z root: stay root (stdout, no file to chown).
  const child = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-i', iface, '-n', '-s', '0', '-U', '--immediate-mode', '-B', '32768', '-Z', 'root', '-w', '-', filter], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const chunks: Buffer[] = [];
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => chunks.push(d));
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  return new Promise((resolve, reject) => {
    const onErr = (d: Buffer) => {
      stderr += d.toString();
      if (/listening on/.test(stderr)) {
        child.stderr!.off('data', onErr);
        child.stderr!.on('data', (x: Buffer) => (stderr += x.toString()));
        resolve({
          child,
          async stop() {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
            await exited;
            const pcap = Buffer.concat(chunks);
            const { linkType, frames } = parsePcap(pcap);
            const segments = tcpSegments(frames, linkType);
            // tcpdump's closing statistics; a drop would make "not seen on the wire" meaningless.
            const dropped = /(\d+) packets? dropped by kernel/.exec(stderr);
            if (!dropped) throw new Error(`tcpdump did not report its statistics: ${stderr.trim()}`);
            return { frames, segments, streams: reassemble(segments), pcap, droppedByKernel: Number(dropped[1]) };
          },
        });
      }
    };
    child.stderr!.on('data', onErr);
    child.once('error', (e) => reject(new Error(`cannot run tcpdump (apt-get install -y tcpdump): ${e.message}`)));
    child.once('exit', (code) => reject(new Error(`tcpdump exited ${code} before listening (is it installed? apt-get install -y tcpdump): ${stderr.trim()}`)));
  });
}
