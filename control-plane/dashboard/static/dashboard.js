/* global document, window, fetch */
// The Wren dashboard: reads the control plane's /api/ JSON and draws it with DOM calls only.
// Every value from the mesh (names come from manifests) goes in as text (textContent,
// setAttribute), never as markup, so a name cannot inject HTML; the page's CSP allows no
// inline script either. Refreshes every 2 s. An ES module (strict), loaded by index.html.

// Retry-After read as the CLI reads it (RFC 9110 section 10.2.3, the three HTTP-date forms
// only): common/http-retry-after.ts, served compiled by the admin port.
import { retryAfterMs as retryAfterValueMs } from './retry-after.js';

const SVG = 'http://www.w3.org/2000/svg';
const REFRESH_MS = 2000;
let timer = null;
let generation = 0;

/** el('td', { class: 'num' }, 'text', child...): an element with attributes and text/element children. */
function el(tag, attrs, ...children) {
  const e = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  for (const c of children) if (c !== undefined && c !== null) e.append(c instanceof window.Node ? c : String(c));
  return e;
}

const windowParam = () => document.getElementById('window').value;
const pct = (v) => (v === null || v === undefined ? '-' : `${(v * 100).toFixed(2)}%`);
const rate = (v) => `${Number(v).toFixed(2)} rps`;
const ms = (v) => (v === null || v === undefined ? '-' : `${Number(v).toFixed(1)} ms`);
const link = (href, text) => el('a', { href }, text);

/** The longest pause a Retry-After makes the page take before it refreshes again. */
const MAX_RETRY_AFTER_MS = 60_000;

/**
 * The wait a 429/503's Retry-After asks for, in ms (delay-seconds or an HTTP-date, RFC 9110
 * section 10.2.3), at most MAX_RETRY_AFTER_MS; null without a usable one. Not Date.parse on
 * whatever has a letter in it: that took "x 5" for a date in 2001 and a comment of any
 * characters, and read an asctime date in the browser's zone, hours off.
 */
function retryAfterMs(res) {
  if (res.status !== 429 && res.status !== 503) return null;
  // eslint-disable-next-line no-restricted-properties -- the browser has no injected Clock; an HTTP-date is wall time
  const ms = retryAfterValueMs(res.headers.get('retry-after'), Date.now());
  return ms === undefined ? null : Math.min(ms, MAX_RETRY_AFTER_MS);
}

async function api(path) {
  const sep = path.includes('?') ? '&' : '?';
  const res = await fetch(`${path}${sep}window=${encodeURIComponent(windowParam())}`, { headers: { accept: 'application/json' } });
  if (!res.ok) {
    const reason = (await res.json().catch(() => ({}))).error || '';
    const e = new Error(`${path}: ${res.status} ${reason}`);
    e.status = res.status;
    e.reason = String(reason);
    // The control plane's render budget (or a proxy in front) asks the page to come back later.
    e.retryAfterMs = retryAfterMs(res);
    throw e;
  }
  return res.json();
}

function table(headers, rows, empty) {
  if (rows.length === 0) return el('p', { class: 'empty' }, empty);
  return el('table', {},
    el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', {}, h)))),
    el('tbody', {}, ...rows));
}

function statCells(s) {
  if (!s) return [el('td', { class: 'num' }, '-'), el('td', { class: 'num' }, '-'), el('td', { class: 'num' }, '-'), el('td', { class: 'num' }, '-'), el('td', { class: 'num' }, '-'), el('td', { class: 'num' }, '-')];
  const l = s.latencyMs;
  return [
    el('td', { class: 'num', 'data-field': 'rate' }, rate(s.requestRate)),
    el('td', { class: 'num', 'data-field': 'success' }, pct(s.successRate)),
    el('td', { class: 'num' }, l ? `${ms(l.p50)} / ${ms(l.p95)} / ${ms(l.p99)}` : '-'),
    el('td', { class: 'num' }, String(s.tcp.open)),
    el('td', { class: 'num' }, pct(s.mtlsShare)),
    el('td', { class: 'num' }, String(s.reporters)),
  ];
}
const STAT_HEADERS = ['rate', 'success', 'p50 / p95 / p99', 'TCP open', 'mTLS', 'proxies'];

// ---- topology -----------------------------------------------------------------------

async function topology(view) {
  const t = await api('/api/topology');
  const callers = [...new Set(t.edges.map((e) => `${e.from.namespace}/${e.from.workload}`))].sort();
  const services = t.services.map((s) => `${s.name}.${s.namespace}`).sort();
  for (const e of t.edges) if (e.to.service && !services.includes(e.to.service)) services.push(e.to.service);
  const rowH = 90;
  const height = Math.max(callers.length, services.length, 1) * rowH + 40;
  const width = 900;
  const svg = el('svg:svg', { class: 'topology', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'service topology' });
  svg.append(el('svg:defs', {}, el('svg:marker', { id: 'arrow', viewBox: '0 0 10 10', refX: '10', refY: '5', markerWidth: '8', markerHeight: '8', orient: 'auto' },
    el('svg:path', { d: 'M0,0 L10,5 L0,10 z', fill: '#6b7380' }))));
  const pos = new Map();
  const node = (key, label, kind, x, y, href) => {
    pos.set(`${kind}:${key}`, { x, y });
    const text = el('svg:text', { x: x + 10, y: y + 24 }, label);
    svg.append(el('svg:g', { class: `node ${kind}`, 'data-kind': kind, 'data-name': key },
      el('svg:rect', { x, y, width: 220, height: 38 }),
      href ? el('svg:a', { href }, text) : text));
  };
  callers.forEach((c, i) => node(c, `workload ${c}`, 'workload', 20, 20 + i * rowH));
  services.forEach((s, i) => node(s, `service ${s}`, 'service', width - 240, 20 + i * rowH, `#/service/${encodeURIComponent(s)}`));
  for (const e of t.edges) {
    const a = pos.get(`workload:${e.from.namespace}/${e.from.workload}`);
    const b = pos.get(`service:${e.to.service}`);
    if (!a || !b) continue;
    const x1 = a.x + 220, y1 = a.y + 19, x2 = b.x, y2 = b.y + 19;
    const mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
    const failing = e.successRate !== null && e.successRate < 0.95;
    const lat = e.latencyMs ? ` · p99 ${ms(e.latencyMs.p99)}` : '';
    const secure = e.mtlsShare === null ? null : e.mtlsShare >= 1;
    svg.append(el('svg:g', {
      class: `edge${failing ? ' failing' : ''}${e.requestRate === 0 && e.tcp.openedRate === 0 ? ' idle' : ''}`,
      'data-from': `${e.from.namespace}/${e.from.workload}`, 'data-to': e.to.service, 'data-rate': e.requestRate, 'data-mtls': secure === null ? 'unknown' : String(secure),
    },
    el('svg:line', { x1, y1, x2, y2 }),
    el('svg:text', { x: mx - 110, y: my - 8, class: 'label' }, `${rate(e.requestRate)} · ${pct(e.successRate)}${lat}`),
    el('svg:text', { x: mx - 110, y: my + 10, class: secure ? 'mtls' : secure === false ? 'plain' : '' }, secure ? 'mTLS' : secure === false ? 'plaintext' : '')));
  }
  view.append(el('h2', {}, 'Topology'), svg);
  view.append(el('h3', {}, 'Edges'), table(['from', 'to', ...STAT_HEADERS],
    t.edges.map((e) => el('tr', {}, el('td', {}, `${e.from.namespace}/${e.from.workload}`), el('td', {}, e.to.service || 'unknown'), ...statCells(e))), 'No traffic reported yet.'));
  view.append(el('h3', {}, 'Workloads (inbound)'), table(['workload', ...STAT_HEADERS],
    t.workloads.map((w) => el('tr', {}, el('td', {}, `${w.namespace}/${w.name}`), ...statCells(w))), 'No proxy has reported yet.'));
}

// ---- services -----------------------------------------------------------------------

async function services(view) {
  const t = await api('/api/topology');
  view.append(el('h2', {}, 'Services'), table(['service', 'endpoints', ...STAT_HEADERS],
    t.services.map((s) => el('tr', {}, el('td', {}, link(`#/service/${encodeURIComponent(`${s.name}.${s.namespace}`)}`, `${s.name}.${s.namespace}`)), el('td', { class: 'num' }, String(s.endpoints)), ...statCells(s.stat))),
    'No services.'));
}

async function service(view, key) {
  const s = await api(`/api/services/${encodeURIComponent(key)}`);
  view.append(el('h2', {}, `Service ${s.name}.${s.namespace}`));
  view.append(table(STAT_HEADERS, [el('tr', {}, ...statCells(s.stat))], ''));
  for (const p of s.ports) {
    view.append(el('h3', {}, `Port ${p.port} (${p.name || 'unnamed'}, ${p.protocol})`));
    view.append(table(['endpoint', 'workload', 'identity', 'state', 'reported by'], p.endpoints.map((e) => el('tr', { 'data-endpoint': `${e.address}:${e.port}` },
      el('td', {}, `${e.address}:${e.port}`), el('td', {}, e.workload || '-'), el('td', {}, e.identity || '(not meshed)'),
      el('td', { class: `state state-${e.state}`, 'data-state': e.state }, e.state + (e.withdrawn ? ` until ${e.withdrawn.until}` : '')),
      el('td', {}, e.reports.map((r) => `${r.pod}: ${r.kind}${r.reason ? ` (${r.reason})` : ''}`).join('; ') || '-'))), 'No endpoints.'));
  }
  view.append(el('h3', {}, 'Callers'), table(['from', ...STAT_HEADERS], s.callers.map((e) => el('tr', {}, el('td', {}, `${e.from.namespace}/${e.from.workload}`), ...statCells(e))), 'No callers reported.'));
  view.append(el('h3', {}, 'Traffic policy'), el('pre', {}, JSON.stringify(s.trafficPolicy, null, 2)));
  view.append(el('h3', {}, 'Routes'), s.routes.length ? el('pre', {}, JSON.stringify(s.routes, null, 2)) : el('p', { class: 'empty' }, 'No routes.'));
  view.append(el('h3', {}, `Authorization policies in ${s.namespace}`), s.authorizationPolicies.length ? el('pre', {}, JSON.stringify(s.authorizationPolicies, null, 2)) : el('p', { class: 'empty' }, 'None.'));
}

// ---- proxies ------------------------------------------------------------------------

function certCell(c) {
  if (!c.notAfter) return el('td', {}, '-');
  const days = c.expiresInMs / 86_400_000;
  return el('td', { class: days < 1 ? 'state-ejected' : '' }, `${c.notAfter} (${days >= 1 ? `${days.toFixed(1)} days` : `${(c.expiresInMs / 3_600_000).toFixed(1)} h`})`);
}

async function proxies(view) {
  const p = await api('/api/proxies');
  view.append(el('h2', {}, 'Proxies'), table(['pod', 'identity', 'config', 'certificate expires', 'ejecting'],
    p.proxies.map((x) => el('tr', {}, el('td', {}, link(`#/proxy/${encodeURIComponent(x.pod)}`, x.pod)), el('td', {}, x.identity || '-'),
      el('td', {}, x.ackedVersion === x.latestVersion ? `${x.ackedVersion} (synced)` : `${x.ackedVersion || '-'} (latest ${x.latestVersion})${x.nacks ? `, ${x.nacks} NACKs` : ''}`),
      certCell(x.certificate), el('td', { class: 'num' }, String(x.ejections.length)))), 'No proxy connected.'));
}

async function proxy(view, pod) {
  const x = await api(`/api/proxies/${encodeURIComponent(pod)}`);
  view.append(el('h2', {}, `Proxy ${x.pod}`));
  view.append(table(['identity', 'workload', 'config', 'certificate expires', 'chains to', 'last stats'], [el('tr', {},
    el('td', {}, x.identity || '-'), el('td', {}, x.workload || '-'), el('td', {}, `${x.ackedVersion || '-'} / latest ${x.latestVersion}`), certCell(x.certificate),
    el('td', {}, x.certificate.chainsTo || '-'), el('td', {}, x.stats ? `${x.stats.lastReportAt}${x.stats.droppedEdges ? `, ${x.stats.droppedEdges} edges dropped` : ''}` : '-'))], ''));
  if (x.lastNack) view.append(el('p', { class: 'state-ejected' }, `Last NACK: ${x.lastNack.version}: ${x.lastNack.detail}`));
  view.append(el('h3', {}, 'Endpoints it keeps out'), table(['service', 'endpoint', 'kind', 'reason', 'for'],
    x.ejections.map((e) => el('tr', {}, el('td', {}, `${e.service}:${e.servicePort}`), el('td', {}, `${e.address}:${e.port}`), el('td', { class: `state-${e.kind === 'outlier-ejection' ? 'ejected' : e.kind}` }, e.kind), el('td', {}, e.reason || '-'), el('td', {}, `${Math.round(e.ejectedForMs / 1000)} s`))),
    'None.'));
  view.append(el('h3', {}, 'Outbound edges'), table(['to', ...STAT_HEADERS], x.edges.map((e) => el('tr', {}, el('td', {}, e.to.service || 'unknown'), ...statCells(e))), 'No outbound traffic reported.'));
  view.append(el('h3', {}, 'Inbound policy'), el('pre', {}, JSON.stringify(x.inboundPolicy, null, 2)));
}

// ---- why ----------------------------------------------------------------------------

async function why(view) {
  const w = await api('/api/why');
  view.append(el('h2', {}, 'Why was it denied?'));
  if (w.denials.length === 0) view.append(el('p', { class: 'empty', 'data-why': 'no-denials' }, 'No recent authorization denials.'));
  for (const d of w.denials) {
    const box = el('section', { class: 'why-denial', 'data-why': 'denial' });
    const what = d.closedTunnel
      ? `closed an open ${d.closedTunnel === 'upgrade' ? `upgrade (${d.method} ${d.path})` : 'tunnel'} the new policy denies`
      : `denied ${d.method || 'a connection'} ${d.path || ''}`;
    box.append(el('h3', { 'data-field': 'what' }, `${d.at} ${d.workload} (${d.reporter}) ${what} on port ${d.port}`));
    box.append(el('p', {}, `caller ${d.principal || '(unauthenticated)'}: ${d.reason}${d.policy ? `, decided by ${d.policy} (${d.action})` : ''}`));
    if (d.effectivePolicyId) {
      box.append(el('p', { 'data-field': 'rule' }, `matched rule ${d.rule} of ${d.policy}: `, el('code', {}, d.effectivePolicyId)));
      if (d.matchedRule) box.append(el('pre', {}, JSON.stringify(d.matchedRule, null, 2)));
    } else if (d.reason === 'no-allow-policy-matched') {
      box.append(el('p', { 'data-field': 'rule' }, 'no rule matched (default deny): no rule of these ALLOW policies matched'));
    }
    // A policy the control plane refused, with no last good version, is enforced fail-closed: say so, it is the why.
    for (const p of [d.decidingPolicy, ...d.allowPoliciesNotMatched].filter((x) => x && x.failClosed))
      box.append(el('p', { class: 'state-ejected', 'data-field': 'fail-closed' }, `${p.name} was refused by the control plane (${p.failClosed.refusal}); enforced fail-closed: ${p.failClosed.enforced}`));
    if (d.decidingPolicy) box.append(el('details', {}, el('summary', {}, `${d.policy}, every rule`), el('pre', {}, JSON.stringify(d.decidingPolicy, null, 2))));
    else if (d.allowPoliciesNotMatched.length) box.append(el('pre', {}, JSON.stringify(d.allowPoliciesNotMatched, null, 2)));
    view.append(box);
  }
  view.append(el('h2', {}, 'Why was it retried?'));
  if (w.droppedRetries > 0) view.append(el('p', { class: 'empty' }, `${w.droppedRetries} retries were dropped by proxies before they could report them.`));
  view.append(table(['when', 'proxy', 'request', 'configured by', 'attempts', 'causes (outcome: retried on)', 'result'],
    w.retries.map((r) => el('tr', { 'data-why': 'retry' },
      el('td', {}, r.at),
      el('td', {}, `${r.workload} (${r.reporter})`),
      el('td', {}, `${r.method} ${r.service}:${r.port}${r.path}`),
      el('td', { 'data-field': 'configured-by' }, configuredBy(r.configuredBy)),
      el('td', { class: 'num', 'data-field': 'attempts' }, String(r.attempts)),
      el('td', { 'data-field': 'causes' }, r.causes.length ? r.causes.map((c) => `${c.outcome}: ${c.retryOn}`).join(', ') : '-'),
      el('td', { class: r.result === 'success' ? 'state-healthy' : 'state-ejected', 'data-field': 'result' }, r.stopped ? `${r.result} (${r.stopped})` : r.result))),
    'No recent retries.'));
}

function configuredBy(c) {
  const what = c.rule !== null ? `${c.kind} ${c.name} rule ${c.rule}` : c.kind === 'TrafficPolicy' ? `the TrafficPolicy of ${c.target}` : `unknown (${c.target} is gone)`;
  if (!c.retry) return what;
  const r = c.retry;
  return `${what}: ${r.attempts} attempts${r.retryOn ? `, retryOn ${r.retryOn.join(',') || '(always-safe only)'}` : ''}${(r.codes || r.retriableStatusCodes || []).length ? `, codes ${(r.codes || r.retriableStatusCodes).join(',')}` : ''}`;
}

// ---- routing ------------------------------------------------------------------------

function route() {
  const h = window.location.hash.replace(/^#/, '') || '/';
  const [, page, ...rest] = h.split('/');
  const arg = decodeURIComponent(rest.join('/'));
  if (page === 'service' && arg) return (v) => service(v, arg);
  if (page === 'proxy' && arg) return (v) => proxy(v, arg);
  if (page === 'services') return services;
  if (page === 'proxies') return proxies;
  if (page === 'why') return why;
  return topology;
}

/** What the view shows: the page (hash and window) and when it was loaded; null before the first. */
let shown = null;
const pageKey = () => `${window.location.hash.replace(/^#/, '') || '/'} ${windowParam()}`;
const clockTime = (t) => new Date(t).toLocaleTimeString();

/**
 * Said on the page when the control plane refuses it (429/503 with Retry-After): what is
 * shown and when it is asked again. A refused refresh keeps the page with a note that it is
 * stale (as of its last load); a refused navigation (another page, or another window) does
 * not leave the old page under the new address as if it were the one asked for.
 */
function refusalNote(kind, e, retryAt, pause) {
  const why = `the control plane refused it (HTTP ${e.status}${e.reason ? `: ${e.reason}` : ''})`;
  const when = `retrying at ${clockTime(retryAt)} (in ${Math.ceil(pause / 1000)} s)`;
  return el('p', { id: 'stale', class: 'stale-note', 'data-stale': kind, role: 'alert' },
    kind === 'stale'
      ? `Stale: shown as loaded at ${clockTime(shown.at)}; the refresh was refused: ${why}; ${when}.`
      : `Not loaded: ${window.location.hash || '#/'} (window ${windowParam()}): ${why}; ${when}.`);
}

async function render() {
  const mine = ++generation;
  const key = pageKey();
  const next = el('main', { id: 'view' });
  const status = document.getElementById('status');
  let pause = REFRESH_MS;
  let refused = null;
  let loaded = false;
  try {
    await route()(next);
    loaded = true;
  } catch (e) {
    if (typeof e.retryAfterMs === 'number') refused = e;
    else next.append(el('p', { class: 'state-ejected' }, `Cannot load: ${e.message}`));
  }
  if (mine !== generation) return; // a newer render started meanwhile
  // eslint-disable-next-line no-restricted-properties -- the browser has no injected Clock; the times shown are wall time
  const now = Date.now();
  if (loaded) {
    shown = { key, at: now };
    status.textContent = `updated ${clockTime(now)}`;
    document.getElementById('view').replaceWith(next);
  } else if (refused) {
    // 429/503 with Retry-After: the control plane is busy rendering (its render budget).
    // Come back when it says, not every 2 s (which would only be refused again and add to
    // its load), and say on the page what is shown and when it is asked again.
    pause = Math.max(REFRESH_MS, refused.retryAfterMs);
    const retryAt = now + pause;
    status.textContent = `control plane busy; retrying in ${Math.ceil(pause / 1000)} s (at ${clockTime(retryAt)})`;
    const view = document.getElementById('view');
    if (shown && shown.key === key) {
      // A refresh of the page shown: keep it, marked stale.
      document.getElementById('stale')?.remove();
      view.classList.add('stale');
      view.prepend(refusalNote('stale', refused, retryAt, pause));
    } else {
      // A navigation: the page shown is another one; show the refusal instead.
      shown = null;
      next.append(refusalNote('refused', refused, retryAt, pause));
      view.replaceWith(next);
    }
  } else {
    shown = null;
    status.textContent = 'error';
    document.getElementById('view').replaceWith(next);
  }
  if (timer) window.clearTimeout(timer);
  timer = window.setTimeout(render, pause);
}

window.addEventListener('hashchange', render);
document.getElementById('window').addEventListener('change', render);
render();
