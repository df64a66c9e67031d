import { FakeClock, seededRandom } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import type { Ejection } from '../../contract/discovery.js';
import { parseService } from '../../contract/parse.js';
import { MeshStore } from '../store/mesh-store.js';
import { EndpointWithdrawal } from './endpoint-withdrawal.js';
import { overlayWithdrawals } from './withdrawal-overlay.js';
import { DEFAULT_WITHDRAWAL } from './withdrawal-settings.js';

const svc = (name: string, ready: boolean[]) =>
  parseService({ name, namespace: 'shop', ports: [{ port: 80, endpoints: ready.map((r, i) => ({ address: `10.0.0.${i + 1}`, port: 8080, ready: r })) }] }, 'test');
const ej = (service: string, i: number): Ejection => ({ service, servicePort: 80, address: `10.0.0.${i}`, port: 8080, kind: 'connect-failure', reason: '', ejectedForMs: 0 });

describe('overlayWithdrawals', () => {
  test('the served view is the source view with withdrawn endpoints unready; only the affected service changes version', () => {
    const clock = new FakeClock();
    const source = new MeshStore(clock, seededRandom(1));
    const served = new MeshStore(clock, seededRandom(2));
    const w = new EndpointWithdrawal({ settings: { ...DEFAULT_WITHDRAWAL, ttlMs: 5_000 }, clock, logger: silentLogger });
    const off = overlayWithdrawals(source, served, w);
    source.apply([svc('api', [true, true, true]), svc('db', [true, true])], []);
    expect(served.ready).toBe(false); // nothing is served before the source's initial sync
    source.markReady();
    expect(served.ready).toBe(true);
    expect([...served.view.services.keys()].sort()).toEqual(['api.shop', 'db.shop']);
    const seq = served.view.seq;
    const db = served.view.services.get('db.shop');

    w.report(1, 'a', [ej('api.shop', 2)]);
    w.report(2, 'b', [ej('api.shop', 2)]);
    expect(served.view.seq).toBe(seq + 1);
    expect(served.changedSince(seq)).toEqual(new Set(['api.shop']));
    expect(served.view.services.get('api.shop')!.ports[0].endpoints.map((e) => e.ready)).toEqual([true, false, true]);
    expect(served.view.services.get('db.shop')).toBe(db);
    expect(source.view.services.get('api.shop')!.ports[0].endpoints.every((e) => e.ready)).toBe(true); // the source's truth is untouched

    // A source change elsewhere in the service keeps the withdrawal applied.
    source.apply([svc('api', [true, true, true, true])], []);
    expect(served.view.services.get('api.shop')!.ports[0].endpoints.map((e) => e.ready)).toEqual([true, false, true, true]);
    // The TTL gives it back.
    clock.advance(5_000);
    expect(served.view.services.get('api.shop')!.ports[0].endpoints.map((e) => e.ready)).toEqual([true, true, true, true]);
    // Removed services go from the served view too; after `off` nothing follows any more.
    source.apply([], ['db.shop']);
    expect(served.view.services.has('db.shop')).toBe(false);
    off();
    w.close();
    source.apply([], ['api.shop']);
    expect(served.view.services.has('api.shop')).toBe(true);
  });
});
