import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { closedPort } from './helpers/closed-port.js';
import { metric } from './helpers/admin-metric.js';
import { until } from './helpers/until.js';

/**
 * discovery.firstConfigTimeoutMs: a proxy whose control plane never answers reports ready
 * once the wait is over, logs FIRST_CONFIG_TIMEOUT and counts it as
 * wren_limit_exceeded_total{direction="discovery",limit="first-config-timeout"} (0 while
 * waiting, so the series exists before it fires); a proxy whose first config arrives in
 * time never counts it.
 */
const pki = testPki();
const COUNTER = /wren_limit_exceeded_total\{direction="discovery",limit="first-config-timeout"\} (\d+)/;
const ready = async (adminPort: number) => (await fetch(`http://127.0.0.1:${adminPort}/ready`)).status;

test('no config within firstConfigTimeoutMs: ready without it, logged and counted once', async () => {
  const logs: string[] = [];
  const controlPlane = `127.0.0.1:${await closedPort()}`;
  const p = await startProxy({ pki, serviceAccount: 'web', logs, controlPlane, config: { discovery: { controlPlane, firstConfigTimeoutMs: 400 } } });
  try {
    expect(await ready(p.adminPort)).toBe(503);
    expect(await p.metricsText()).toMatch(/^wren_limit_exceeded_total\{direction="discovery",limit="first-config-timeout"\} 0$/m);
    expect(await until(async () => (await ready(p.adminPort)) === 200, 5000)).toBe(true);
    expect(await metric(p, COUNTER)).toBe(1);
    expect(logs.filter((l) => l.includes('"code":"FIRST_CONFIG_TIMEOUT"'))).toHaveLength(1);
    // Once: the timer is not re-armed.
    await new Promise((r) => setTimeout(r, 600));
    expect(await metric(p, COUNTER)).toBe(1);
  } finally {
    await p.close();
  }
});

test('a first config in time: never counted', async () => {
  const p = await startProxy({ pki, serviceAccount: 'web', config: { discovery: { firstConfigTimeoutMs: 300 } }, services: [] });
  try {
    expect(await ready(p.adminPort)).toBe(200);
    await new Promise((r) => setTimeout(r, 600));
    expect(await metric(p, COUNTER)).toBe(0);
  } finally {
    await p.close();
  }
});
