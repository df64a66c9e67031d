import { rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Replaces a manifest the way a ConfigMap mount (or an editor) does: a hidden temp file,
 * then a rename. A plain writeFile truncates first, and a directory rescan landing in
 * between reads an empty file, i.e. all its objects removed (the source skips hidden files).
 */
export async function replaceFile(path: string, content: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp`);
  await writeFile(tmp, content);
  await rename(tmp, path);
}
