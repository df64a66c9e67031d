import { createLogger } from '../common/logger.js';
import { CONTROL_PLANE_USAGE, parseControlPlaneArgs, runControlPlaneUntilSignal, UsageError } from '../control-plane/main.js';

export interface Output {
  write(chunk: string): unknown;
}

/**
 * `wren control-plane ...`: runs the control plane until SIGTERM/SIGINT.
 * Returns the exit code: 0 after a graceful shutdown (or --help), 2 on a usage error,
 * 1 when it cannot start (port in use, unreadable kubeconfig, ...). Logs go to `err`.
 */
export async function controlPlaneCommand(argv: string[], out: Output, err: Output): Promise<number> {
  let args;
  try {
    args = parseControlPlaneArgs(argv);
  } catch (e) {
    err.write(`wren control-plane: ${(e as Error).message}\n\n${CONTROL_PLANE_USAGE}`);
    return 2;
  }
  if (args.help) {
    out.write(CONTROL_PLANE_USAGE);
    return 0;
  }
  const logger = createLogger({ level: args.logLevel, base: { component: 'control-plane' }, sink: (line) => err.write(line + '\n') });
  try {
    await runControlPlaneUntilSignal(args, logger);
    return 0;
  } catch (e) {
    err.write(`wren control-plane: ${(e as Error).message}\n`);
    return e instanceof UsageError ? 2 : 1;
  }
}
