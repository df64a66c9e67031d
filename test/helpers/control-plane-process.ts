import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

/**
 * The built CLI's control plane (`wren control-plane`, dist/) as its own process, as the
 * install runs it but insecure: reading the directory `dir`, gRPC on 127.0.0.1:0, the admin
 * server on `admin` (host:port); resolves with the admin port its "control plane listening"
 * log line names, rejects (with its output) if it exits first. stop() ends it with SIGTERM.
 */
export async function startControlPlaneProcess(dir: string, admin: string): Promise<{ readonly child: ChildProcess; readonly adminPort: number; stop(): Promise<void> }> {
  const wren = join(import.meta.dirname, '..', '..', 'dist', 'cli', 'wren.js');
  const child = spawn(process.execPath, [wren, 'control-plane', '--source', `dir:${dir}`, '--listen', '127.0.0.1:0', '--admin', admin, '--insecure'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const adminPort = await new Promise<number>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d;
      const m = /"msg":"control plane listening".*?"admin":(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', () => reject(new Error(`control plane exited before listening:\n${out}`)));
  });
  return {
    child, adminPort,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}
