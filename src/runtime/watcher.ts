import { watch, type FSWatcher } from 'chokidar';
import { realpath } from 'node:fs/promises';

/** Quiet time after the last change before one reconcile runs: a git checkout of many files becomes one reconcile. */
export const DEBOUNCE_MS = 250;
/** How often the folder's real path is checked: git-sync swaps a symlink *above* the folder, which no event reports. */
export const REALPATH_CHECK_MS = 2_000;

const isConfigFile = (p: string) => /\.ya?ml$/i.test(p);

/**
 * Watches the configuration folder (and the secrets folder) and calls `onChange` once per burst of changes.
 * chokidar 5 has no globs: the folder is watched and YAML files are filtered here. Atomic saves (write + rename),
 * checkouts and ConfigMap `..data` symlink swaps all arrive as add/change/unlink events and are debounced alike; a
 * symlink swapped above the folder (git-sync's `current`) is noticed by checking the folder's real path.
 */
export async function watchFolders(folders: { config: string; secrets?: string }, onChange: () => void): Promise<{ close(): Promise<void> }> {
  let timer: NodeJS.Timeout | null = null;
  const trigger = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      onChange();
    }, DEBOUNCE_MS);
  };
  const watchers: FSWatcher[] = [];
  const watchConfig = () => {
    const config = watch(folders.config, {
      ignoreInitial: true,
      atomic: true,
      followSymlinks: true,
      // Keep folders (to descend) and YAML files; `..data` of a ConfigMap is a dot-folder and must be seen too.
      ignored: (p, stats) => Boolean(stats?.isFile()) && !isConfigFile(p),
    });
    config.on('all', (_event, p) => {
      if (isConfigFile(p) || !/\.[^/]+$/.test(p)) trigger();
    });
    config.on('error', () => undefined); // a folder that vanishes is reported by the reconcile it triggers
    return config;
  };
  let config = watchConfig();
  let realDir = await realpath(folders.config).catch(() => null);
  const realpathCheck = setInterval(() => {
    void realpath(folders.config).then(
      async (now) => {
        if (now === realDir) return;
        realDir = now;
        await config.close();
        config = watchConfig();
        trigger();
      },
      () => undefined,
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
