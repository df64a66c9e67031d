/**
 * No Docker engine runs in CI, so the Dockerfile is checked statically (instructions
 * parse, stages and COPY sources resolve, the user is the numeric proxy UID, the
 * entrypoint file is one `npm run build` produces) and its entrypoint is run the way
 * the image runs it: `node dist/cli/wren.js`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SIDECAR_NODE_FLAGS } from '../cli/heap-flags.js';

const ROOT = join(import.meta.dirname, '..');
const NODE = process.execPath;

interface Instruction {
  readonly line: number;
  readonly op: string;
  readonly flags: Record<string, string>;
  readonly args: string;
}

const KNOWN = new Set(['FROM', 'RUN', 'CMD', 'LABEL', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME', 'USER', 'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL']);

/** Dockerfile syntax: comments, `\` continuations, `--flag=value` options (docs.docker.com/reference/dockerfile). */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let l = lines[i];
    if (/^\s*(#.*)?$/.test(l)) continue;
    while (/\\\s*$/.test(l) && i + 1 < lines.length) {
      l = l.replace(/\\\s*$/, ' ');
      i++;
      if (!/^\s*#/.test(lines[i])) l += lines[i];
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(l);
    if (!m) throw new Error(`line ${start + 1}: cannot parse ${JSON.stringify(l)}`);
    const op = m[1].toUpperCase();
    if (!KNOWN.has(op)) throw new Error(`line ${start + 1}: unknown instruction ${op}`);
    let rest = m[2].trim();
    const flags: Record<string, string> = {};
    for (let f = /^--([a-z-]+)(?:=(\S+))?\s+/.exec(rest); f && op !== 'RUN'; f = /^--([a-z-]+)(?:=(\S+))?\s+/.exec(rest)) {
      flags[f[1]] = f[2] ?? 'true';
      rest = rest.slice(f[0].length);
    }
    out.push({ line: start + 1, op, flags, args: rest });
  }
  return out;
}

const execForm = (args: string): string[] => {
  const v = JSON.parse(args) as unknown;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new Error(`not exec form: ${args}`);
  return v;
};

const ins = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
const stages: { name: string; image: string; body: Instruction[] }[] = [];
for (const i of ins) {
  if (i.op === 'FROM') {
    const [image, as, name] = i.args.split(/\s+/);
    expect(as?.toUpperCase()).toBe('AS');
    stages.push({ name, image, body: [] });
  } else stages.at(-1)!.body.push(i);
}
const stage = (name: string) => stages.find((s) => s.name === name)!;
const last = stages.at(-1)!;
const one = (op: string) => last.body.filter((i) => i.op === op);

test('multi-stage build on node:24-bookworm-slim; every --from names an earlier stage', () => {
  expect(stages.map((s) => [s.name, s.image])).toEqual([['build', 'node:24-bookworm-slim'], ['runtime', 'node:24-bookworm-slim']]);
  stages.forEach((s, idx) => {
    for (const c of s.body.filter((i) => i.flags.from)) expect(stages.slice(0, idx).map((p) => p.name)).toContain(c.flags.from);
  });
});

test('build stage: npm ci, npm run build (tsc + addon), prune dev dependencies', () => {
  const runs = stage('build').body.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
  expect(runs).toMatch(/npm ci/);
  expect(runs).toMatch(/npm run build/);
  expect(runs).toMatch(/npm prune --omit=dev/);
  expect(runs).toMatch(/build-essential/);
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  expect(pkg.scripts.build).toMatch(/npm run build:addon/);
  expect(pkg.scripts.build).toMatch(/tsc -p tsconfig.build.json/);
  expect(pkg.scripts['build:addon']).toContain('proxy/native/build.mjs');
  expect(existsSync(join(ROOT, 'proxy', 'native', 'original-dst.c'))).toBe(true);
});

test('every COPY from the build context exists and is not excluded by .dockerignore', () => {
  const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist']));
  const sources = ins.filter((i) => (i.op === 'COPY' || i.op === 'ADD') && !i.flags.from).flatMap((i) => i.args.split(/\s+/).slice(0, -1));
  expect(sources.length).toBeGreaterThan(5);
  for (const s of sources) {
    expect([s, existsSync(join(ROOT, s))]).toEqual([s, true]);
    expect(ignored).not.toContain(s.replace(/\/$/, ''));
  }
  // Everything tsc compiles (tsconfig.build.json "include") that has files must be copied in.
  const tsconfig = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8'));
  const build = stage('build').body.filter((i) => i.op === 'COPY' && !i.flags.from).flatMap((i) => i.args.split(/\s+/).slice(0, -1));
  for (const d of (tsconfig.include as string[]).filter((d) => d !== 'test' && d !== 'bench')) expect(build).toContain(d);
});

test('runtime COPY --from=build sources are produced by the build stage', () => {
  const workdir = stage('build').body.find((i) => i.op === 'WORKDIR')!.args;
  const copiedIn = stage('build').body.filter((i) => i.op === 'COPY' && !i.flags.from).flatMap((i) => i.args.split(/\s+/).slice(0, -1));
  const generated = ['node_modules', 'dist']; // npm ci, npm run build (tsconfig outDir)
  const tsconfig = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8'));
  expect(tsconfig.compilerOptions.outDir).toBe('dist');
  for (const c of last.body.filter((i) => i.op === 'COPY' && i.flags.from === 'build')) {
    const src = c.args.split(/\s+/)[0];
    expect(src.startsWith(`${workdir}/`)).toBe(true);
    const rel = src.slice(workdir.length + 1);
    const ok = generated.includes(rel) || copiedIn.some((s) => rel === s || rel.startsWith(`${s.replace(/\/$/, '')}/`) || (s === 'package.json' && rel === s));
    expect([rel, ok]).toEqual([rel, true]);
    if (!generated.includes(rel)) expect(existsSync(join(ROOT, rel))).toBe(true);
  }
});

test('runtime: iptables + iproute2, numeric non-root USER 2102, exec-form ENTRYPOINT/CMD, node HEALTHCHECK', () => {
  const runs = last.body.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
  expect(runs).toMatch(/apt-get install[^\n]*iptables/);
  expect(runs).toMatch(/apt-get install[^\n]*iproute2/);
  expect(runs).toMatch(/useradd[^\n]*--uid 2102/);
  const users = one('USER');
  expect(users).toHaveLength(1);
  expect(users[0].args).toMatch(/^2102(:2102)?$/);
  expect(last.body.at(-1)!.op).not.toBe('USER');
  // The sidecar's launcher flags (cli/heap-flags.ts: V8 reads the young generation's cap only at start-up; the injected container sets args, not command).
  expect(execForm(one('ENTRYPOINT')[0].args)).toEqual(['node', ...SIDECAR_NODE_FLAGS, '/app/dist/cli/wren.js']);
  expect(execForm(one('CMD')[0].args)).toEqual(['proxy']);
  expect(one('WORKDIR')[0].args).toBe('/app');
  const hc = one('HEALTHCHECK')[0].args;
  expect(hc).not.toMatch(/curl|wget/);
  const cmd = execForm(hc.replace(/^.*?CMD\s+/, ''));
  expect(cmd[0]).toBe('node');
  expect(cmd.join(' ')).toContain("path:'/ready'");
  expect(cmd.join(' ')).toContain('15000');
  for (const p of ['15000', '15001', '15006', '15010', '15014', '15017']) expect(one('EXPOSE')[0].args.split(/\s+/)).toContain(p);
});

test('the HEALTHCHECK command really probes /ready (run against a local stand-in admin server)', async () => {
  const hc = execForm(one('HEALTHCHECK')[0].args.replace(/^.*?CMD\s+/, ''));
  for (const status of [200, 503]) {
    const paths: string[] = [];
    const srv = createServer((req, res) => (paths.push(req.url ?? ''), res.writeHead(status).end()));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    const r = await new Promise<number>((resolve) => {
      const c = spawn(NODE, hc.slice(1), { env: { ...process.env, WREN_ADMIN_PORT: String(port) }, stdio: 'ignore' });
      c.on('exit', (code) => resolve(code ?? -1));
    });
    await new Promise((res) => srv.close(res));
    expect([status, r, paths]).toEqual([status, status === 200 ? 0 : 1, ['/ready']]);
  }
});

test('the entrypoint file is what npm run build produces from cli/wren.ts', () => {
  const build = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8'));
  expect(build.extends).toBe('./tsconfig.json');
  const base = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8'));
  expect(base.compilerOptions).toMatchObject({ outDir: 'dist', rootDir: '.' });
  expect(base.include).toContain('cli');
  if (!existsSync(join(ROOT, 'cli', 'wren.ts'))) throw new Error('cli/wren.ts does not exist: the image ENTRYPOINT (dist/cli/wren.js) would have nothing to run');
});

test('the image command runs the way the image runs it: node dist/cli/wren.js --help', () => {
  const entry = join(ROOT, 'dist', 'cli', 'wren.js');
  if (!existsSync(entry)) throw new Error(`${entry} does not exist: run \`npm run build\` first (npm test does)`);
  const r = spawnSync(NODE, [entry, '--help'], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
  expect({ status: r.status, stderr: r.stderr }).toMatchObject({ status: 0 });
  expect(r.stdout + r.stderr).toMatch(/wren/i);
  for (const sub of ['iptables', 'inject']) {
    const s = spawnSync(NODE, [entry, sub, '--help'], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
    expect({ sub, status: s.status, usage: s.stdout.split('\n')[0] }).toEqual({ sub, status: 0, usage: `Usage: wren ${sub} ${sub === 'inject' ? '[FILE|-] [flags]' : '[flags]'}` });
  }
});
