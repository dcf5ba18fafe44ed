import { watch, type FSWatcher } from 'chokidar';
import { readdir, realpath } from 'node:fs/promises';
import path from 'node:path';
import { isConfigFile, isHidden } from '../../config/files.js';

/** Quiet time after the last change before one reconcile runs: a git checkout of many files becomes one reconcile. */
export const DEBOUNCE_MS = 250;
/**
 * How often the links are checked: a symlink swapped above the folder (git-sync's `current`) or inside it (a
 * ConfigMap's `..data`) changes what the folder's files say, and no file event reports such a swap.
 */
export const REALPATH_CHECK_MS = 2_000;

/** Where the folder and each symlink in it (the entries the config loader reads) lead, one line each. */
async function linkTargets(dir: string): Promise<string[]> {
  const targets: string[] = [];
  async function walk(relative: string): Promise<void> {
    for (const entry of await readdir(path.join(dir, relative), { withFileTypes: true })) {
      if (isHidden(entry.name)) continue;
      const entryPath = path.join(relative, entry.name);
      if (entry.isSymbolicLink())
        targets.push(`${entryPath} -> ${await realpath(path.join(dir, entryPath)).catch(() => '(broken)')}`);
      else if (entry.isDirectory()) await walk(entryPath);
    }
  }
  await walk('');
  return targets;
}

/**
 * Watches the configuration folder (and the secrets folder) and calls `onChange` once per burst of changes.
 * chokidar 5 has no globs: the folder is watched and YAML files are filtered here. Atomic saves (write + rename),
 * checkouts and the files of a new ConfigMap version arrive as add/change/unlink events and are debounced alike;
 * symlink swaps (git-sync's `current` above the folder, a ConfigMap's `..data` inside it) are noticed by checking where
 * the folder and its links lead.
 */
export async function watchFolders(
  folders: { config: string; secrets?: string },
  onChange: () => void,
): Promise<{ close(): Promise<void> }> {
  const layout = async () => ({
    realDir: await realpath(folders.config),
    links: (await linkTargets(folders.config)).join('\n'),
  });
  let last: Awaited<ReturnType<typeof layout>> | null = null;
  let timer: NodeJS.Timeout | null = null;
  const trigger = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      // the links as this reconcile will find them count as seen, so the next check does not repeat it (a folder
      // that moved is left to the check, which also re-watches it)
      void layout()
        .then(
          (now) => {
            if (now.realDir === last?.realDir) last = now;
          },
          () => undefined,
        )
        .finally(onChange);
    }, DEBOUNCE_MS);
  };
  const watchers: FSWatcher[] = [];
  /**
   * The folder's real path, and no link in it is followed: a link that leaves the folder would have chokidar watch the
   * whole tree it leads to (the loader refuses such a link anyway), and every file the loader reads through a link
   * inside the folder is watched where it really is; link swaps are found by the check below.
   */
  const watchConfig = (realDir: string) => {
    const config = watch(realDir, {
      ignoreInitial: true,
      atomic: true,
      followSymlinks: false,
      // Keep folders (to descend) and YAML files; `..data` of a ConfigMap is a dot-folder and must be seen too.
      ignored: (p, stats) => Boolean(stats?.isFile()) && !isConfigFile(p),
    });
    config.on('all', (_event, p) => {
      if (isConfigFile(p) || !/\.[^/]+$/.test(p)) trigger();
    });
    config.on('error', () => undefined); // a folder that vanishes is reported by the reconcile it triggers
    return config;
  };
  last = await layout().catch(() => null);
  let config = watchConfig(last?.realDir ?? folders.config);
  const realpathCheck = setInterval(() => {
    void layout().then(
      async (now) => {
        const moved = now.realDir !== last?.realDir;
        if (!moved && now.links === last?.links) return;
        last = now;
        if (moved) {
          await config.close();
          config = watchConfig(now.realDir); // the old watches follow the old tree
        }
        trigger();
      },
      () => undefined, // a folder that vanishes is reported by the next reconcile
    );
  }, REALPATH_CHECK_MS);
  realpathCheck.unref();
  if (folders.secrets) {
    const secrets = watch(folders.secrets, { ignoreInitial: true, atomic: true, followSymlinks: true });
    secrets.on('all', trigger);
    secrets.on('error', () => undefined); // a missing secrets folder is reported when a secret is resolved
    watchers.push(secrets);
  }
  return {
    async close() {
      if (timer) clearTimeout(timer);
      clearInterval(realpathCheck);
      await Promise.all([config, ...watchers].map((w) => w.close()));
    },
  };
}
