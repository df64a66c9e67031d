import { histogramQuantile } from './histogram-quantile.js';

describe('histogramQuantile (Prometheus histogram_quantile)', () => {
  const bounds = [10, 100, 1000];
  test('interpolates linearly inside the bucket the rank falls in', () => {
    // 100 observations: 50 in (0,10], 40 in (10,100], 10 in (100,1000].
    expect(histogramQuantile(0.5, bounds, [50, 40, 10, 0])).toBe(10);
    expect(histogramQuantile(0.7, bounds, [50, 40, 10, 0])).toBeCloseTo(55);
    expect(histogramQuantile(0.95, bounds, [50, 40, 10, 0])).toBeCloseTo(550);
    expect(histogramQuantile(0.25, bounds, [50, 40, 10, 0])).toBeCloseTo(5);
  });
  test('a rank in the +Inf bucket gives the largest finite bound; empty gives null', () => {
    expect(histogramQuantile(0.99, bounds, [0, 0, 0, 5])).toBe(1000);
    expect(histogramQuantile(0.5, bounds, [0, 0, 0, 0])).toBeNull();
  });
});
