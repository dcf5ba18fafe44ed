/**
 * mailctl packed and installed the way a release is: the Docker build context (the allowlist in .dockerignore) is
 * copied to a scratch folder, `npm pack` runs there (its prepack script generates the types and compiles dist/), and
 * the tarball is installed with `npm install --global --omit=dev` into an empty prefix, as the Dockerfile's runtime
 * stage installs it. The checkout's node_modules is linked in for the build only; its dist/ is never used.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, readdir, readFile, symlink } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** How the Dockerfile and the package test install the tarball: globally (mailctl on PATH), production dependencies only. */
export const INSTALL_FLAGS = ['--global', '--omit=dev'];

/** The paths .dockerignore lets into the build context. It must be an allowlist: `*`, then `!path` lines. */
export async function buildContext(): Promise<string[]> {
  const lines = (await readFile(path.join(ROOT, '.dockerignore'), 'utf8'))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  if (lines[0] !== '*' || lines.slice(1).some((l) => !l.startsWith('!') || /[*?[]/.test(l)))
    throw new Error(`.dockerignore must be "*" followed by "!path" lines, not:\n${lines.join('\n')}`);
  return lines.slice(1).map((l) => l.slice(1).replace(/\/$/, ''));
}

export interface Installed {
  tarball: string;
  /** Paths inside the tarball, without the leading `package/`. */
  packedFiles: string[];
  /** `<prefix>/bin/mailctl`, the link npm made to the package's bin. */
  bin: string;
  /** `<prefix>/lib/node_modules/mailctl`. */
  packageDir: string;
  /** Every package in the installed tree (names, nested ones included). */
  installedPackages: string[];
}

async function packageNames(nodeModules: string): Promise<string[]> {
  const entries = await readdir(nodeModules, { withFileTypes: true }).catch(() => []);
  const names: string[] = [];
  for (const e of entries) {
    if (!e.isDirectory() || e.name.startsWith('.')) continue;
    const scoped = e.name.startsWith('@');
    const dirs = scoped ? (await readdir(path.join(nodeModules, e.name))).map((n) => `${e.name}/${n}`) : [e.name];
    for (const name of dirs) names.push(name, ...(await packageNames(path.join(nodeModules, name, 'node_modules'))));
  }
  return names;
}

/**
 * Packs and installs into `scratch` (src/, pkg/, prefix/). The install prefers the npm cache (--prefer-offline): with
 * the packages' metadata and tarballs cached it needs no network.
 */
export async function packAndInstall(scratch: string): Promise<Installed> {
  const src = path.join(scratch, 'src');
  const pkg = path.join(scratch, 'pkg');
  const prefix = path.join(scratch, 'prefix');
  await Promise.all([mkdir(src), mkdir(pkg), mkdir(prefix)]);
  for (const p of await buildContext()) {
    await mkdir(path.dirname(path.join(src, p)), { recursive: true });
    await cp(path.join(ROOT, p), path.join(src, p), { recursive: true });
  }
  await symlink(path.join(ROOT, 'node_modules'), path.join(src, 'node_modules'));
  const npm = (args: string[], cwd: string) =>
    run('npm', [...args, '--no-audit', '--no-fund'], { cwd, maxBuffer: 64 << 20 }).catch(
      (err: { stdout?: string; stderr?: string; message: string }) => {
        throw new Error(`npm ${args.join(' ')} failed: ${err.message}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
      },
    );
  await npm(['pack', '--pack-destination', pkg], src);
  const [name] = (await readdir(pkg)).filter((f) => f.endsWith('.tgz'));
  if (!name) throw new Error(`npm pack left no tarball in ${pkg}`);
  const tarball = path.join(pkg, name);
  const { stdout } = await run('tar', ['-tzf', tarball], { maxBuffer: 16 << 20 });
  const packedFiles = stdout
    .split('\n')
    .filter(Boolean)
    .map((f) => f.replace(/^package\//, ''));
  await npm(['install', ...INSTALL_FLAGS, '--prefix', prefix, '--prefer-offline', tarball], scratch);
  const packageDir = path.join(prefix, 'lib', 'node_modules', 'mailctl');
  return {
    tarball,
    packedFiles,
    bin: path.join(prefix, 'bin', 'mailctl'),
    packageDir,
    installedPackages: await packageNames(path.join(packageDir, 'node_modules')),
  };
}
