import { jest } from '@jest/globals';
import { Registry } from 'prom-client';
import { createLogger, droppedLogLines } from './logger.js';
import { registerLogDrops } from './log-drops-metric.js';

describe('the default sink: a stalled stderr reader costs dropped lines, not memory', () => {
  afterEach(() => {
    delete (process.stderr as { writableLength?: number }).writableLength;
    jest.restoreAllMocks();
  });

  test('past 4 MiB unwritten a line is dropped and counted; below it, written', async () => {
    const write = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const registry = new Registry();
    registerLogDrops(registry);
    const log = createLogger();
    const before = droppedLogLines.count;
    log.warn('written');
    expect(write).toHaveBeenCalledTimes(1);
    Object.defineProperty(process.stderr, 'writableLength', { get: () => (4 << 20) + 1, configurable: true });
    log.warn('dropped');
    log.warn('dropped too');
    expect(write).toHaveBeenCalledTimes(1);
    expect(droppedLogLines.count - before).toBe(2);
    expect(await registry.getSingleMetricAsString('wren_log_lines_dropped_total')).toMatch(new RegExp(`wren_log_lines_dropped_total ${droppedLogLines.count}\\b`));
  });

  test('field names that look like secrets are redacted', () => {
    const lines: string[] = [];
    createLogger({ sink: (l) => lines.push(l) }).warn('x', { token: 'abc', apiKey: 'k', path: '/p' });
    expect(JSON.parse(lines[0])).toMatchObject({ token: '[redacted]', apiKey: '[redacted]', path: '/p' });
  });
});
