import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { chmod, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

// File descriptors instead of FileHandle objects on the hot paths: a FileHandle costs about twice the main-thread time
// per file (measured with 10,000 small files: 610 → 380 ms), and the inbound sink writes two files per message.
const openFd = promisify(fs.open);
const fsyncFd = promisify(fs.fsync);
const closeFd = promisify(fs.close);
const fchmodFd = promisify(fs.fchmod);
const writeFd = (fd: number, bytes: Uint8Array, offset: number) =>
  new Promise<number>((resolve, reject) =>
    fs.write(fd, bytes, offset, bytes.length - offset, null, (err, written) => (err ? reject(err) : resolve(written))),
  );

/**
 * Names the file on an error of an operation on its descriptor (a `write` or `fsync` error has no path of its own), so
 * a full disk is reported with where it happened. Returns the error, for `throw`.
 */
export function withPath(err: unknown, file: string): unknown {
  if (err instanceof Error && (err as NodeJS.ErrnoException).path === undefined)
    (err as NodeJS.ErrnoException).path = file;
  return err;
}

/** Creates a private folder (0700 whatever the umask) and refuses one that others may write to. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await stat(dir);
  if (!info.isDirectory()) throw new Error(`${dir} is not a folder`);
  if ((info.mode & 0o077) !== 0) await chmod(dir, 0o700);
}

async function fsyncDir(dir: string): Promise<void> {
  const fd = await openFd(dir, 'r');
  try {
    await fsyncFd(fd);
  } finally {
    await closeFd(fd);
  }
}

/**
 * Writes `file` (created 0600, or truncated; `exclusive`: must not exist) and fsyncs it. `exactMode` sets 0600 whatever
 * the umask. Not atomic by itself: callers write a temp file and rename it.
 */
export async function writeFileDurably(
  file: string,
  data: string | Uint8Array,
  options: { exclusive?: boolean; exactMode?: boolean } = {},
): Promise<void> {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const fd = await openFd(file, options.exclusive ? 'wx' : 'w', 0o600);
  try {
    if (options.exactMode) await fchmodFd(fd, 0o600);
    for (let offset = 0; offset < bytes.length;) offset += await writeFd(fd, bytes, offset);
    await fsyncFd(fd);
  } catch (err) {
    throw withPath(err, file);
  } finally {
    await closeFd(fd);
  }
}

/**
 * Replaces `file` atomically and durably: write a temp file in the same folder (0600), fsync it, rename it over the
 * target, fsync the folder. A crash leaves either the old or the new content, never a mix.
 */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  options: { syncDir?: boolean } = {},
): Promise<void> {
  const dir = path.dirname(file);
  const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFileDurably(temp, data, { exclusive: true, exactMode: true });
    await rename(temp, file);
  } catch (err) {
    // a temp file cut short by a full disk would hold the space it took until someone removed it by hand
    await rm(temp, { force: true }).catch(() => undefined);
    throw err;
  }
  if (options.syncDir !== false) await fsyncDir(dir);
}

/**
 * Appends one line and fsyncs it (append-only logs). A write cut short (a full disk) is cut off again, and a file that
 * ends in a torn line gets the new one on a line of its own: a torn line never takes the next one with it.
 */
export async function appendLineDurably(file: string, line: string): Promise<void> {
  const handle = await open(file, 'a+', 0o600);
  try {
    await handle.chmod(0o600);
    const { size } = await handle.stat();
    const last = Buffer.alloc(1);
    if (size > 0) await handle.read(last, 0, 1, size - 1);
    const text = `${size > 0 && last[0] !== 0x0a ? '\n' : ''}${line}${line.endsWith('\n') ? '' : '\n'}`;
    try {
      await handle.appendFile(text);
      await handle.sync();
    } catch (err) {
      await handle.truncate(size).catch(() => undefined);
      throw err;
    }
  } catch (err) {
    throw withPath(err, file);
  } finally {
    await handle.close();
  }
}

export { fsyncDir };
