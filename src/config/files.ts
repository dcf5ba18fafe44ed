import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { diagnostic, type Diagnostic } from './diagnostics.js';

/** The configuration folder the commands read when no --dir is given. */
export const DEFAULT_DIR = 'servers.d';

/** Files larger than this are refused before parsing: a config file has no reason to be this big. */
export const MAX_FILE_BYTES = 1024 * 1024;

export interface SourceFile {
  /** Path as shown to the user: the folder as given, joined with the file's relative path. */
  displayPath: string;
  /** Path relative to the folder, with `/` separators (stable across machines; used in digests). */
  relativePath: string;
  bytes: Buffer;
}

export interface FolderRead {
  files: SourceFile[];
  diagnostics: Diagnostic[];
}

export const isConfigFile = (name: string): boolean => /\.ya?ml$/i.test(name);
/** Hidden entries are skipped (a ConfigMap's `..data` and timestamped folders, editors' temp files). */
export const isHidden = (name: string): boolean => name.startsWith('.');

const fileDiagnostic = (displayPath: string, code: string, message: string): Diagnostic =>
  diagnostic(displayPath, null, code, message);

/**
 * Reads every `*.yaml`/`*.yml` below `dir` (recursive, dotfiles and dot-folders ignored, sorted).
 * A symlink is followed only when its target stays inside the folder; one that leaves it is refused,
 * so a committed link cannot make mailctl read files from elsewhere on the machine.
 */
export async function readConfigFolder(dir: string): Promise<FolderRead> {
  const diagnostics: Diagnostic[] = [];
  let root: string;
  try {
    root = await realpath(dir);
    if (!(await stat(root)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : 'is not a readable folder';
    return {
      files: [],
      diagnostics: [fileDiagnostic(dir, 'folder-unreadable', `configuration folder ${dir} ${reason}`)],
    };
  }
  const files: SourceFile[] = [];

  async function walk(relativeDir: string): Promise<void> {
    const entries = await readdir(path.join(root, relativeDir), { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (isHidden(entry.name)) continue;
      const relativePath = relativeDir ? `${relativeDir}/${entry.name}` : entry.name;
      const displayPath = path.join(dir, relativePath);
      const absolute = path.join(root, relativePath);
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = await realpath(absolute).catch(() => null);
        if (target === null) {
          if (isConfigFile(entry.name))
            diagnostics.push(
              fileDiagnostic(displayPath, 'broken-symlink', `${displayPath} is a symlink to a missing file`),
            );
          continue;
        }
        if (target !== root && !target.startsWith(root + path.sep)) {
          if (isConfigFile(entry.name) || (await stat(target)).isDirectory()) {
            diagnostics.push(
              fileDiagnostic(
                displayPath,
                'symlink-outside-folder',
                `${displayPath} is a symlink that leaves the configuration folder; it is ignored`,
              ),
            );
          }
          continue;
        }
        const targetStat = await stat(target);
        isDir = targetStat.isDirectory();
        isFile = targetStat.isFile();
        // A link back into the tree would be read twice (or loop); only regular links to files are followed.
        if (isDir) continue;
      }
      if (isDir) await walk(relativePath);
      else if (isFile && isConfigFile(entry.name)) {
        const size = (await lstat(absolute).then((s) => (s.isSymbolicLink() ? stat(absolute) : s))).size;
        if (size > MAX_FILE_BYTES) {
          diagnostics.push(
            fileDiagnostic(
              displayPath,
              'file-too-large',
              `${displayPath} is ${size} bytes; configuration files may be at most 1 MiB`,
            ),
          );
          continue;
        }
        files.push({ displayPath, relativePath, bytes: await readFile(absolute) });
      }
    }
  }

  await walk('');
  return { files, diagnostics };
}

/**
 * Identity of a folder's content: every file's relative path and bytes. Cheap (no parsing), so `apply` can prove
 * to the daemon which folder it means without validating it twice.
 */
export function folderDigest(files: readonly SourceFile[]): string {
  const hash = createHash('sha256');
  for (const file of [...files].sort((a, b) => (a.relativePath < b.relativePath ? -1 : 1))) {
    hash.update(file.relativePath).update('\0').update(String(file.bytes.length)).update('\0').update(file.bytes);
  }
  return `sha256:${hash.digest('hex')}`;
}
