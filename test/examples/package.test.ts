/**
 * The npm package, as an operator gets it: packed with `npm pack` from the Docker build context, installed from the
 * tarball with production dependencies only into an empty prefix, and run from there: `--version`, `validate` of the
 * examples, and a daemon (`run`) that `apply` and `status` talk to, polling a real Dovecot and delivering a message.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { flowYaml, imapYaml } from '../harness/fixtures.js';
import {
  cli,
  createWorkspace,
  eventually,
  startDaemon,
  type DaemonProcess,
  type Workspace,
} from '../harness/mailctl.js';
import { packAndInstall, ROOT, type Installed } from './package-install.js';

const run = promisify(execFile);
const manifest = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8'));
const USER = 'support@example.com';

let scratch = '';
let installed: Installed;
let dovecot: Dovecot | undefined;
let ws: Workspace | undefined;
let daemon: DaemonProcess | undefined;

test.before(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'mailctl-package-'));
  installed = await packAndInstall(scratch);
});
test.after(async () => {
  await daemon?.kill().catch(() => undefined);
  await dovecot?.stop();
  await ws?.cleanup();
  await rm(scratch, { recursive: true, force: true });
});

test('the tarball holds the compiled program, its bin and the schema; no sources, tests, maps or secrets', () => {
  const files = installed.packedFiles;
  for (const f of ['package.json', 'README.md', 'bin/mailctl.js', 'dist/cli/main.js', 'schema/mailctl.schema.json'])
    assert.ok(files.includes(f), `${f} is packed`);
  const unexpected = files.filter(
    (f) => !/^(package\.json|README\.md|bin\/mailctl\.js|schema\/[^/]+\.json|dist\/.+\.js)$/.test(f),
  );
  assert.equal(unexpected, []);
  assert.not.ok(files.some((f) => f.startsWith('dist/') && f.endsWith('.map')));
});

test('every import in the packed dist/ resolves: relative ones to packed files, bare ones to builtins or dependencies', async () => {
  const dependencies = Object.keys(manifest.dependencies);
  const problems: string[] = [];
  for (const file of installed.packedFiles.filter((f) => f.endsWith('.js'))) {
    const text = await readFile(path.join(installed.packageDir, file), 'utf8');
    // tsc's output: static imports and re-exports start a line and hold no `;` before `from '…';`
    const specifiers = [
      ...text.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s*(['"])([^'"]+)\1;$/gm),
      ...text.matchAll(/^import\s*(['"])([^'"]+)\1;$/gm),
      ...text.matchAll(/\bimport\((['"])([^'"]+)\1\)/g),
    ].map((m) => m[2]!);
    assert.ok(!/^import\b/m.test(text) || specifiers.length > 0, `${file}: imports found`);
    for (const spec of specifiers) {
      if (spec.startsWith('.')) {
        const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
        if (!installed.packedFiles.includes(target)) problems.push(`${file}: ${spec} is not in the package`);
      } else if (!spec.startsWith('node:') && !builtinModules.includes(spec)) {
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        if (!dependencies.includes(name)) problems.push(`${file}: ${spec} is not a dependency`);
      }
    }
  }
  assert.equal(problems, []);
  // what dist/ reads as JSON at run time
  assert.ok(
    installed.packedFiles.includes('package.json') && installed.packedFiles.includes('schema/mailctl.schema.json'),
  );
});

test('the install has the dependencies and none of the devDependencies', () => {
  for (const name of Object.keys(manifest.dependencies)) assert.ok(installed.installedPackages.includes(name), name);
  const dev = Object.keys(manifest.devDependencies).filter((name) => installed.installedPackages.includes(name));
  assert.equal(dev, []);
});

test('the installed mailctl runs through its bin link: --version, validate of the examples, schema', async () => {
  const { stdout } = await run(installed.bin, ['--version']); // the shebang line, as a shell runs it
  assert.is(stdout.trim(), manifest.version);
  const env = { ...process.env, NO_COLOR: '1' };
  const validate = await cli(
    ['validate', '--dir', path.join(ROOT, 'examples/servers.d')],
    env,
    undefined,
    installed.bin,
  );
  assert.is(validate.code, 0, validate.stdout + validate.stderr);
  assert.match(validate.stdout, /valid \(5 servers, 2 flows in 4 files; 0 errors, 0 warnings\)/);
  const schema = await cli(['schema'], env, undefined, installed.bin);
  assert.equal(
    JSON.parse(schema.stdout),
    JSON.parse(await readFile(path.join(ROOT, 'schema/mailctl.schema.json'), 'utf8')),
  );
});

test('the installed daemon: run, apply and status against a real Dovecot; a message is delivered', async () => {
  dovecot = await startDovecot({ users: { [USER]: 'pw-package' } });
  await dovecot.createFolder(USER, 'ContactStorage');
  ws = await createWorkspace();
  await ws.writeServer('flow.yaml', flowYaml());
  await ws.writeServer(
    'imap-support.yaml',
    imapYaml({
      shortName: 'support',
      user: USER,
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: `\${file:${await ws.writeSecret('password', 'pw-package')}}`,
      storageFolder: 'ContactStorage',
    }),
  );
  daemon = await startDaemon(ws, ['--no-watch'], {}, installed.bin);
  const apply = await cli(['apply', '--dir', ws.dir], ws.env, undefined, installed.bin);
  assert.is(apply.code, 0, apply.stdout + apply.stderr);
  assert.match(apply.stdout, /imap\/support: Connection succeeded/);
  await eventually(
    async () => /imap\/support\s.*running/.test((await cli(['status'], ws!.env, undefined, installed.bin)).stdout),
    20_000,
    'status shows imap/support running',
  );
  await dovecot.deliver(
    USER,
    'From: a@example.org\r\nTo: support@example.com\r\nSubject: hello\r\n\r\nfrom the package\r\n',
  );
  const queue = path.join(ws.stateDir, 'queues', 'general');
  await eventually(
    async () => (await readdir(queue).catch(() => [])).some((f) => f.endsWith('.json')),
    30_000,
    'the message delivered to queues/general',
  );
  const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
  assert.match(metrics, new RegExp(`mailctl_build_info\\{version="${manifest.version}"`));
});

test.run();
