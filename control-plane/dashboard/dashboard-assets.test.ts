import { dashboardAsset } from './dashboard-assets.js';

test('the dashboard serves its own files and nothing named like an Object property', () => {
  expect(dashboardAsset('/dashboard/')?.contentType).toBe('text/html; charset=utf-8');
  // FILES['constructor'] is Object's constructor: it answered a "file" with no body.
  for (const p of ['/dashboard/constructor', '/dashboard/__proto__', '/dashboard/toString', '/dashboard/hasOwnProperty', '/dashboard/../package.json']) expect(dashboardAsset(p)).toBeNull();
});

test('/dashboard/retry-after.js is common/http-retry-after.ts as JavaScript: an ES module with no import, no types', () => {
  const a = dashboardAsset('/dashboard/retry-after.js');
  expect(a?.contentType).toBe('text/javascript; charset=utf-8');
  const js = a!.body.toString();
  expect(js).toMatch(/^export function retryAfterMs\(value, nowMs\) \{$/m);
  expect(js).not.toMatch(/^import /m);
  expect(js).not.toMatch(/sourceMappingURL/);
});
