/**
 * Paths confined to folders the daemon was started with (`--secrets-dir`, `--ca-dir`, `--sink-root`). A path from the
 * configuration folder is judged by where it really leads (links followed), since a link can point anywhere.
 */
import { realpath } from 'node:fs/promises';
import path from 'node:path';

/** Whether `target` lies below `dir` (both absolute and normalized; `..data`, a Kubernetes name, is inside). */
export function isBelow(target: string, dir: string): boolean {
  const rel = path.relative(dir, target);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

/** Where `target` leads: its real path, or for a path that does not exist yet, its deepest existing ancestor's. */
export async function realPathOf(target: string): Promise<string> {
  const rest: string[] = [];
  let at = path.resolve(target);
  for (;;) {
    try {
      return path.join(await realpath(at), ...rest);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const parent = path.dirname(at);
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || parent === at) throw err;
      rest.unshift(path.basename(at));
      at = parent;
    }
  }
}

/** Whether the real path of `target` lies below the real path of one of `dirs`. */
export async function leadsInto(target: string, dirs: readonly string[]): Promise<boolean> {
  const real = await realPathOf(target);
  for (const dir of dirs) if (isBelow(real, await realPathOf(dir))) return true;
  return false;
}
