import { describeMissing, installCommand, missing } from '../../scripts/test-prerequisites.mjs';

/** Why a test needing Debian's `chromium` cannot run here (printed, for a `describe.skip`), or null. */
export function chromiumSkipReason(file: string): string | null {
  const gone = missing(['chromium']);
  if (!gone.length) return null;
  const reason = `missing ${describeMissing(gone)}; \`npm test\` installs it when run as root on Debian, or run: ${installCommand(gone)}`;
  // Straight to stderr: jest drops the console output of a file whose tests are all skipped.
  process.stderr.write(`\n${'!'.repeat(78)}\n! ${file}: SKIPPED: ${reason}\n${'!'.repeat(78)}\n`);
  return reason;
}
