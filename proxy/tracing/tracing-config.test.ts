import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseWith } from '../../common/schema.js';
import { parseTracingConfig, readCollectorTls } from './tracing-config.js';

const parse = (raw: unknown) => parseWith(parseTracingConfig, raw, 'test');

describe('tracing config', () => {
  test('defaults: no collector, the SDK batch processor sizes', () => {
    expect(parse(undefined)).toEqual({ collector: undefined, maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMs: 5000, exportTimeoutMs: 30_000, shutdownTimeoutMs: 5000 });
  });

  test('a collector: TLS by default, plaintext only when asked', () => {
    expect(parse({ collector: { address: 'otel-collector.observability:4317' } }).collector).toEqual({
      address: 'otel-collector.observability:4317', plaintext: false, tls: { caFile: undefined, certFile: undefined, keyFile: undefined },
    });
    expect(parse({ collector: { address: '127.0.0.1:4317', plaintext: true } }).collector?.plaintext).toBe(true);
  });

  test.each([
    [{ collector: { address: 'no-port' } }, /address/],
    [{ collector: { address: 'c:4317', plaintext: true, tls: { caFile: '/ca.pem' } } }, /collector.plaintext: plaintext and tls are exclusive/],
    [{ collector: { address: 'c:4317', tls: { certFile: '/c.pem' } } }, /collector.tls.keyFile/],
    [{ maxQueueSize: 10, maxExportBatchSize: 20 }, /maxExportBatchSize: must not exceed maxQueueSize/],
    [{ queueSize: 1 }, /queueSize: unknown field/],
  ])('%j is refused, naming the field', (raw, message) => {
    expect(() => parse(raw)).toThrow(ConfigError);
    expect(() => parse(raw)).toThrow(message);
  });
});

test('readCollectorTls reads the files given, and an unreadable one is an error naming its field', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wren-collector-tls-'));
  try {
    writeFileSync(join(dir, 'ca.pem'), 'CA');
    expect(readCollectorTls({ caFile: join(dir, 'ca.pem'), certFile: undefined, keyFile: undefined })).toEqual({ ca: Buffer.from('CA'), cert: null, key: null });
    expect(() => readCollectorTls({ caFile: join(dir, 'ca.pem'), certFile: join(dir, 'missing.pem'), keyFile: join(dir, 'missing.key') })).toThrow(/^cannot read tracing\.collector\.tls\.certFile: ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
