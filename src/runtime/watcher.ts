import { watch, type FSWatcher } from 'chokidar';

/** Quiet time after the last change before one reconcile runs: a git checkout of many files becomes one reconcile. */
export const DEBOUNCE_MS = 250;

const isConfigFile = (p: string) => /\.ya?ml$/i.test(p);

/**
 * Watches the configuration folder (and the secrets folder) and calls `onChange` once per burst of changes.
 * chokidar 5 has no globs: the folder is watched and YAML files are filtered here. Atomic saves (write + rename),
 * checkouts and ConfigMap `..data` symlink swaps all arrive as add/change/unlink events and are debounced alike.
 */
export function watchFolders(folders: { config: string; secrets?: string }, onChange: () => void): { close(): Promise<void> } {
  let timer: NodeJS.Timeout | null = null;
  const trigger = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      onChange();
    }, DEBOUNCE_MS);
  };
  const watchers: FSWatcher[] = [];
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
  watchers.push(config);
  if (folders.secrets) {
    const secrets = watch(folders.secrets, { ignoreInitial: true, atomic: true, followSymlinks: true });
    secrets.on('all', trigger);
    secrets.on('error', () => undefined); // a missing secrets folder is reported when a secret is resolved
    watchers.push(secrets);
  }
  return {
    async close() {
      if (timer) clearTimeout(timer);
      await Promise.all(watchers.map((w) => w.close()));
    },
  };
}
