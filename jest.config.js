// Native ESM throughout: @kubernetes/client-node and cockatiel ship ESM only, so the
// project is "type": "module" and jest runs with --experimental-vm-modules (set by the
// npm scripts). ts-jest transpiles each file in isolation; `npm run typecheck` does the
// whole-program type check once instead of per test file.
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
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/{proxy,control-plane,certs,contract,common,cli}/**/*.test.ts'] },
    { ...common, displayName: 'integration', testMatch: ['<rootDir>/test/**/*.test.ts'] },
  ],
};
