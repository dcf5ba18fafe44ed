/**
 * A small tmpfs mounted on a folder of the test's own (the tests run as root): a disk that fills up on demand. `fill()`
 * takes every free byte with a filler file, `free()` gives it back, `unmount()` (lazily, so an open file of a daemon
 * still running cannot keep it) ends it; the folder's content is gone then.
 */
import { execFile } from 'node:child_process';
import { mkdir, open, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Tmpfs {
  dir: string;
  /** Takes all free space; writes then fail with ENOSPC. */
  fill(): Promise<void>;
  /** Removes the filler file. */
  free(): Promise<void>;
  unmount(): Promise<void>;
}

export async function mountTmpfs(dir: string, sizeBytes: number): Promise<Tmpfs> {
  if (process.getuid?.() !== 0) throw new Error('mounting a tmpfs needs root (the tests run as root on Debian)');
  await mkdir(dir, { recursive: true });
  await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir]);
  const filler = path.join(dir, '.filler');
  return {
    dir,
    async fill() {
      const handle = await open(filler, 'a');
      const chunk = Buffer.alloc(4096);
      try {
        for (;;) await handle.write(chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      } finally {
        await handle.close();
      }
    },
    free: () => rm(filler, { force: true }),
    async unmount() {
      await run('umount', ['-l', dir]).catch(() => undefined);
    },
  };
}
