import { availableParallelism } from 'node:os';

// Native ESM throughout: @kubernetes/client-node and cockatiel ship ESM only, so the
// project is "type": "module" and jest runs with --experimental-vm-modules (set by the
// npm scripts). ts-jest transpiles each file in isolation; `npm run typecheck` does the
// whole-program type check once instead of per test file.
// Node 24 runs the tests (package.json engines). `node_modules/.bin/jest` run by hand starts
// under whatever `node` is first on PATH; under node 20 the sidecars the suites start
// in-process failed every HTTP/2 call between them, naming nothing of the cause.
if (Number(process.versions.node.split('.')[0]) < 24) {
  throw new Error(`the tests need Node.js 24 or later, this is ${process.versions.node}: run them with npm test or npm run jest -- <paths>, which run the project's node (node_modules/.bin/node)`);
}
const tsJest = ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }];
const common = {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': tsJest },
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
};
export default {
  testTimeout: 30000,
  // Some client libraries keep idle timers (grpc-js channel idleness, keep-alive agents)
  // that --detectOpenHandles does not report; the suites close every server they open,
  // and a run must never hang CI waiting for a library timer.
  forceExit: true,
  // Two test files at a time even on a 2-CPU machine (jest's default there is one): most
  // files wait on sockets, timers and child processes rather than compute, and the
  // whole suite ran in 627 s instead of 913 s with every test passing (2026-12-07).
  maxWorkers: Math.max(2, availableParallelism() - 1),
  // A worker keeps what every file it ran left in its heap (about 3 MB a file: 43 -> 143 MB
  // over 33 files), so late in a run each full GC of a memory-heavy test walks a heap near
  // 1 GB (a GC measurement took 22 s, the response-cache suites passed their 30 s under load).
  // A worker past this after a file is replaced before the next one.
  workerIdleMemoryLimit: '512MB',
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/{proxy,control-plane,certs,contract,common,cli}/**/*.test.ts'] },
    { ...common, displayName: 'integration', testMatch: ['<rootDir>/test/**/*.test.ts'] },
  ],
};
