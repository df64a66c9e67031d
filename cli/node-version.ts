/**
 * The oldest Node.js major Wren runs on (package.json `engines`, the `node` devDependency
 * the scripts run). Older ones start and then fail in ways that say nothing of the cause:
 * node 20's `http2` refuses the flat header lists the proxy passes it, so on node 20 every
 * call between sidecars over `protocol.meshHttp2: h2` failed UNAVAILABLE, with "The
 * \"headers\" argument must be of type object" in the log.
 */
export const MIN_NODE_MAJOR = 24;

/** Why Wren cannot run on this Node.js version (`process.versions.node`), or null. */
export function nodeVersionProblem(version: string): string | null {
  const major = Number(/^(\d+)\./.exec(version)?.[1] ?? NaN);
  if (major >= MIN_NODE_MAJOR) return null;
  return (
    `wren: Node.js ${MIN_NODE_MAJOR} or later is needed, this is ${version}. ` +
    `In a checkout, \`npm ci\` installs it (the \`node\` devDependency) and the npm scripts run it; ` +
    `by hand: node_modules/.bin/node dist/cli/wren.js\n`
  );
}
