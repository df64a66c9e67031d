import { Registry } from 'prom-client';
import { budgetedPage, DEFAULT_RENDER_BUDGET, RenderBudget, retryAfterSeconds } from './render-budget.js';

/** The budget on a fake clock: `t` is what now() says. */
const setup = (settings = DEFAULT_RENDER_BUDGET) => {
  const clock = { t: 5_000 };
  const registry = new Registry();
  const budget = new RenderBudget(settings, () => clock.t, registry);
  const refused = async () => (await registry.getSingleMetricAsString('wren_cp_admin_render_refused_total')).split('\n').filter((l) => !l.startsWith('#')).join('\n');
  return { clock, budget, refused };
};

describe('RenderBudget: a page whose render took >= threshold is refused for factor × that render', () => {
  test('a 250 ms render refuses the page for 1000 ms (factor 4), counted per refusal; then it is served again', async () => {
    const { clock, budget, refused } = setup();
    expect(budget.refusal('/api/topology')).toBeNull();
    budget.record('/api/topology', 250);
    expect(budget.refusal('/api/topology')).toEqual({ forMs: 1000, renderMs: 250 });
    clock.t += 999;
    expect(budget.refusal('/api/topology')).toEqual({ forMs: 1, renderMs: 250 });
    expect(await refused()).toBe('wren_cp_admin_render_refused_total{page="/api/topology"} 2');
    clock.t += 1;
    expect(budget.refusal('/api/topology')).toBeNull();
  });

  test('below the threshold nothing is refused; pages are budgeted apart', () => {
    const { budget } = setup();
    budget.record('/api/stat', 99);
    expect(budget.refusal('/api/stat')).toBeNull();
    budget.record('/api/stat', 100);
    expect(budget.refusal('/api/stat')?.forMs).toBe(400);
    expect(budget.refusal('/api/why')).toBeNull();
  });

  test('factor 0 (--admin-render-budget off) never refuses; the threshold is a setting', () => {
    const off = setup({ factor: 0, thresholdMs: 100 });
    off.budget.record('/api/stat', 60_000);
    expect(off.budget.refusal('/api/stat')).toBeNull();
    const low = setup({ factor: 2, thresholdMs: 10 });
    low.budget.record('/api/stat', 20);
    expect(low.budget.refusal('/api/stat')?.forMs).toBe(40);
  });
});

test('budgetedPage: the /api/ pages, one page per family; nothing else', () => {
  // /api/stat: one page per kind (no kind is service, as the page reads it); a kind the page refuses is one page, whatever it says.
  expect(budgetedPage('/api/stat')).toBe('/api/stat?kind=service');
  expect(['service', 'workload', 'namespace', 'edge'].map((k) => budgetedPage('/api/stat', new URLSearchParams({ kind: k, window: '30s' }))))
    .toEqual(['/api/stat?kind=service', '/api/stat?kind=workload', '/api/stat?kind=namespace', '/api/stat?kind=edge']);
  for (const k of ['pods', '', 'edge&x', 'x'.repeat(1000)]) expect(budgetedPage('/api/stat', new URLSearchParams({ kind: k }))).toBe('/api/stat');
  expect(budgetedPage('/api/services/web.shop')).toBe('/api/services');
  expect(budgetedPage('/api/proxies/shop/web-0')).toBe('/api/proxies/POD');
  expect(budgetedPage('/api/proxies')).toBe('/api/proxies');
  for (const p of ['/ready', '/metrics', '/debug/view', '/api/nope', '/dashboard/']) expect(budgetedPage(p)).toBeNull();
});

test('retryAfterSeconds: whole seconds (RFC 9110 section 10.2.3), rounded up, at least 1', () => {
  expect([1, 400, 1000, 1001, 8000].map(retryAfterSeconds)).toEqual([1, 1, 1, 2, 8]);
});
