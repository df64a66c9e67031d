import { createRequire } from 'node:module';
import type * as NodeHttp from 'node:http';

/**
 * node:http, loaded through `require`. An ES-module `import ... from 'node:http'` makes Node
 * (24) build the module's ESM facade, which reads every export, including the lazy
 * `WebSocket`, `CloseEvent` and `MessageEvent` getters: that loads Node's bundled undici,
 * about 7 MB of private memory and 2.5 MB of heap in every process that never uses it
 * (measured: `RssAnon` 9.1 MB for an empty ES module, 16.3 MB with `import 'node:http'`).
 * A sidecar's memory is the product's (issue 12: RSS per sidecar), so every runtime use of
 * node:http goes through here; `import type` from 'node:http' is erased and stays as is.
 * test/sidecar-module-loads.test.ts fails when a sidecar loads undici again, and the
 * lint forbids value imports of node:http elsewhere.
 */
const http = createRequire(import.meta.url)('node:http') as typeof NodeHttp;

export const { Agent, createServer, request } = http;
