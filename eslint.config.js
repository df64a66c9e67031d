import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-empty': ['error', { allowEmptyCatch: false }],
      // Logic modules take an injected Clock; only common/clock.ts may read the wall clock.
      'no-restricted-properties': ['error', { object: 'Date', property: 'now', message: 'inject a Clock (common/clock.ts)' }],
      // An ES-module import of node:http loads Node's bundled undici (MBs per sidecar): common/node-http.ts.
      '@typescript-eslint/no-restricted-imports': ['error', { paths: [{ name: 'node:http', message: 'import from common/node-http.ts (an ESM import of node:http loads undici)', allowTypeImports: true }] }],
    },
  },
  { files: ['bench/**', 'test/**', '**/*.test.ts', 'scripts/**'], rules: { '@typescript-eslint/no-restricted-imports': 'off' } },
  { files: ['common/clock.ts', 'bench/**', 'test/**', '**/*.test.ts'], rules: { 'no-restricted-properties': 'off' } },
);
