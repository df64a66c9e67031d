import type { ClientHttp2Session } from 'node:http2';
import { chargeReset, setResetBudget } from './session-resets.js';

const session = () => ({}) as ClientHttp2Session;

test('the budget is spent once, on its last reset', () => {
  const s = session();
  let spent = 0;
  setResetBudget(s, 3, () => spent++);
  chargeReset(s);
  chargeReset(s);
  expect(spent).toBe(0);
  chargeReset(s);
  expect(spent).toBe(1);
  chargeReset(s);
  chargeReset(s);
  expect(spent).toBe(1);
});

test('a session without a budget (0, or never set) is never retired', () => {
  const s = session();
  let spent = 0;
  setResetBudget(s, 0, () => spent++);
  for (let i = 0; i < 10; i++) chargeReset(s);
  chargeReset(session());
  expect(spent).toBe(0);
});
