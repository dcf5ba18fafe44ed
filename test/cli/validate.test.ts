// `mailctl validate` and `mailctl schema` through main(argv, io) with captured streams, plus one run of the real bin.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../src/cli/main.js';
import { flow, imap, mailbox, smtp } from '../config/helpers.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const ESC = '\u001b[';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function capture(): Writable & { text: string; isTTY?: boolean } {
  const w = new Writable({
    write(chunk, _enc, done) {
      w.text += String(chunk);
      done();
    },
  }) as Writable & { text: string; isTTY?: boolean };
  w.text = '';
  return w;
}

/** Runs mailctl in-process. `env` replaces the environment entirely (no GITHUB_ACTIONS/NO_COLOR leaking in from CI). */
async function run(argv: string[], env: NodeJS.ProcessEnv = {}, tty = false): Promise<Run> {
  const stdout = capture();
  const stderr = capture();
  if (tty) stdout.isTTY = true;
  const code = await main(argv, { stdout, stderr, env });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

let root = '';
/** Folder name relative to the working directory, as a user would type it. */
const DIR = 'servers.d';

async function writeFolder(files: Record<string, string>): Promise<void> {
  await rm(path.join(root, DIR), { recursive: true, force: true });
  await mkdir(path.join(root, DIR), { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(root, DIR, name), text);
}

const INVALID = { 'support.yaml': mailbox('support', ['folder: INBOX', 'storageFolder: INBOX']) };
const WARNING_ONLY = { 'support.yaml': [imap(), flow('support')].join('---\n') };
const VALID = { 'support.yaml': mailbox('support') };

test.before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'mailctl-validate-'));
  // Paths in diagnostics are shown as given: run from the folder's parent so they read servers.d/….
  process.chdir(root);
});

test.after(async () => {
  process.chdir(REPO);
  await rm(root, { recursive: true, force: true });
});

test('text: one line per diagnostic in the documented format, exit 1 when invalid', async () => {
  await writeFolder(INVALID);
  const r = await run(['validate']);
  assert.is(r.code, 1);
  const lines = r.stdout.trimEnd().split('\n');
  assert.is(
    lines[0],
    'servers.d/support.yaml:12:16: error[storage-folder-equals-folder] storageFolder must differ from folder (both "INBOX")',
  );
  for (const line of lines.slice(0, -1))
    assert.match(line, /^servers\.d\/[^:]+:\d+:\d+: (error|warning)\[[a-z0-9-]+\] \S/);
  assert.match(lines.at(-1)!, /^servers\.d: invalid \(2 servers, 1 flow in 1 file; 1 error, 0 warnings\)$/);
  assert.not.ok(r.stdout.includes(ESC), 'no colour when stdout is not a terminal');
  assert.is(r.stderr, '');
});

test('--dir names the folder; all diagnostics of all files are reported together', async () => {
  await writeFolder({
    'a.yaml': imap({ extra: ['port: 0'] }),
    'b.yaml': 'kind: Nope\n',
    'c.yaml': smtp({ extra: ['hots: x'] }),
  });
  const r = await run(['validate', '--dir', DIR]);
  assert.is(r.code, 1);
  const codes = r.stdout
    .trimEnd()
    .split('\n')
    .slice(0, -1)
    .map((l) => l.replace(/ .*/, ''));
  assert.equal(codes, ['servers.d/a.yaml:11:7:', 'servers.d/b.yaml:1:7:', 'servers.d/c.yaml:10:1:']);
});

test('--json and --format json: formatVersion 1, valid, diagnostics with every field', async () => {
  await writeFolder(INVALID);
  for (const flags of [['--json'], ['--format', 'json']]) {
    const r = await run(['validate', ...flags]);
    assert.is(r.code, 1);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.is(out.formatVersion, '1');
    assert.is(out.valid, false);
    assert.equal(out.diagnostics, [
      {
        file: 'servers.d/support.yaml',
        line: 12,
        column: 16,
        severity: 'error',
        code: 'storage-folder-equals-folder',
        message: 'storageFolder must differ from folder (both "INBOX")',
        resource: 'imap/support',
      },
    ]);
  }
  await writeFolder(VALID);
  const ok = JSON.parse((await run(['validate', '--json'])).stdout) as {
    formatVersion: string;
    valid: boolean;
    diagnostics: unknown[];
  };
  assert.equal([ok.formatVersion, ok.valid, ok.diagnostics], ['1', true, []]);
});

test('--format github and GITHUB_ACTIONS=true: workflow-command annotations', async () => {
  await writeFolder({
    'support.yaml': mailbox('support', ['storageFolder: INBOX']).replace('flow: support\n', 'flow: sales\n'),
  });
  const expected = [
    '::error file=servers.d/support.yaml,line=10,col=7,title=mailctl flow-not-found::flow "sales" does not exist (flows: support)',
    '::error file=servers.d/support.yaml,line=11,col=16,title=mailctl storage-folder-equals-folder::storageFolder must differ from folder (both "INBOX")',
    '::warning file=servers.d/support.yaml,line=24,col=7,title=mailctl unused-flow::the flow "support" is not used by any imap server',
  ];
  const explicit = await run(['validate', '--format', 'github']);
  const auto = await run(['validate'], { GITHUB_ACTIONS: 'true' });
  for (const r of [explicit, auto]) {
    assert.is(r.code, 1);
    assert.equal(
      r.stdout.split('\n').filter((l) => l.startsWith('::')),
      expected,
    );
  }
  // --format wins over GITHUB_ACTIONS.
  const text = await run(['validate', '--format', 'text'], { GITHUB_ACTIONS: 'true' });
  assert.not.ok(text.stdout.includes('::error'));
  const json = await run(['validate', '--json'], { GITHUB_ACTIONS: 'true' });
  assert.is((JSON.parse(json.stdout) as { formatVersion: string }).formatVersion, '1');
});

test('exit 0 when valid, also with warnings; --strict fails on warnings', async () => {
  await writeFolder(VALID);
  const clean = await run(['validate']);
  assert.is(clean.code, 0);
  assert.is(clean.stdout.trim(), 'servers.d: valid (2 servers, 1 flow in 1 file; 0 errors, 0 warnings)');
  assert.is((await run(['validate', '--strict'])).code, 0);

  await writeFolder(WARNING_ONLY);
  const warned = await run(['validate']);
  assert.is(warned.code, 0);
  assert.match(warned.stdout, /^servers\.d\/support\.yaml:8:9: warning\[no-reply-server\] /m);
  const strict = await run(['validate', '--strict']);
  assert.is(strict.code, 1);
  assert.match(strict.stdout, /invalid \(--strict: warnings count as errors\)/);
  const strictJson = JSON.parse((await run(['validate', '--strict', '--json'])).stdout) as { valid: boolean };
  assert.is(strictJson.valid, false);
});

test('colour: on for a terminal or FORCE_COLOR; off with NO_COLOR or --no-color', async () => {
  await writeFolder(INVALID);
  assert.ok((await run(['validate'], {}, true)).stdout.includes(ESC), 'colour on a terminal');
  assert.ok((await run(['validate'], { FORCE_COLOR: '1' })).stdout.includes(ESC), 'FORCE_COLOR');
  assert.not.ok((await run(['validate'], { NO_COLOR: '1' }, true)).stdout.includes(ESC), 'NO_COLOR');
  assert.not.ok((await run(['validate', '--no-color'], { FORCE_COLOR: '1' }, true)).stdout.includes(ESC), '--no-color');
  assert.not.ok((await run(['validate', '--no-color'], {}, true)).stderr.includes(ESC));
});

test('an unknown flag, a bad --format, an extra argument: exit 1 with a message, no stack trace', async () => {
  await writeFolder(VALID);
  const flag = await run(['validate', '--bogus']);
  assert.is(flag.code, 1);
  assert.match(flag.stderr, /--bogus/);
  assert.match(flag.stderr, /usage: mailctl validate/);
  const format = await run(['validate', '--format', 'xml']);
  assert.is(format.code, 1);
  assert.match(format.stderr, /--format must be text, json or github/);
  const extra = await run(['validate', 'servers.d']);
  assert.is(extra.code, 1);
  assert.match(extra.stderr, /unexpected argument/);
  const command = await run(['valdiate']);
  assert.is(command.code, 1);
  assert.match(command.stderr, /unknown command "valdiate"/);
  for (const r of [flag, format, extra, command]) assert.not.match(r.stderr, /\n\s+at /);
});

test('a missing folder is a diagnostic (folder-unreadable), exit 1', async () => {
  const r = await run(['validate', '--dir', 'nope.d']);
  assert.is(r.code, 1);
  assert.match(r.stdout, /^nope\.d:1:1: error\[folder-unreadable\] configuration folder nope\.d does not exist$/m);
});

test('mailctl schema prints the JSON Schema', async () => {
  const r = await run(['schema']);
  assert.is(r.code, 0);
  const printed = JSON.parse(r.stdout) as Record<string, unknown>;
  const file = JSON.parse(await readFile(path.join(REPO, 'schema/mailctl.schema.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  assert.equal(printed, file);
  assert.is(printed.$schema, 'https://json-schema.org/draft/2020-12/schema');
});

/** The example folders: a realistic company, and OAuth2 mailboxes of Microsoft 365 and Google. */
const EXAMPLE_FOLDERS = ['examples/servers.d', 'examples/oauth2'];

test('examples/servers.d and examples/oauth2 validate cleanly: exit 0, no errors, no warnings, even with --strict', async () => {
  for (const folder of EXAMPLE_FOLDERS) {
    const r = await run(['validate', '--dir', path.join(REPO, folder), '--strict', '--json']);
    const out = JSON.parse(r.stdout) as { valid: boolean; diagnostics: unknown[]; servers: number; flows: number };
    assert.equal(out.diagnostics, [], folder);
    assert.is(r.code, 0);
    assert.ok(out.valid);
    assert.ok(out.servers >= 5 && out.flows >= 1, `${folder}: ${out.servers} servers, ${out.flows} flows`);
  }
});

test('every examples/ file starts with the yaml-language-server modeline pointing at the schema', async () => {
  const { readdir } = await import('node:fs/promises');
  const files = (
    await Promise.all(
      EXAMPLE_FOLDERS.map(async (folder) =>
        (await readdir(path.join(REPO, folder), { recursive: true }))
          .filter((f) => /\.ya?ml$/.test(String(f)))
          .map((f) => path.join(folder, String(f))),
      ),
    )
  ).flat();
  const dir = REPO;
  assert.ok(files.length >= 6);
  for (const f of files) {
    const text = await readFile(path.join(dir, String(f)), 'utf8');
    const first = text.split('\n')[0]!;
    const m = /^# yaml-language-server: \$schema=(\S+)$/.exec(first);
    assert.ok(m, `${f}: first line is the modeline`);
    assert.ok(
      existsSync(path.resolve(path.dirname(path.join(dir, String(f))), m[1]!)),
      `${f}: the modeline's schema path resolves`,
    );
  }
});

test('the real bin: node bin/mailctl.js validate (after build)', async () => {
  if (!existsSync(path.join(REPO, 'dist/cli/main.js'))) {
    // `npm test` builds first; when a single file is run by hand, build here (emits even if other modules have type errors).
    spawnSync(process.execPath, [path.join(REPO, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], {
      cwd: REPO,
      encoding: 'utf8',
    });
  }
  const env = { ...process.env, NO_COLOR: '1', GITHUB_ACTIONS: '' };
  const ok = spawnSync(
    process.execPath,
    [path.join(REPO, 'bin/mailctl.js'), 'validate', '--dir', 'examples/servers.d'],
    { cwd: REPO, encoding: 'utf8', env },
  );
  assert.is(ok.status, 0, ok.stderr);
  assert.match(
    ok.stdout,
    /^examples\/servers\.d: valid \(\d+ servers, \d+ flows in \d+ files; 0 errors, 0 warnings\)$/m,
  );
  await writeFolder(INVALID);
  const bad = spawnSync(process.execPath, [path.join(REPO, 'bin/mailctl.js'), 'validate'], {
    cwd: root,
    encoding: 'utf8',
    env,
  });
  assert.is(bad.status, 1);
  assert.match(bad.stdout, /^servers\.d\/support\.yaml:12:16: error\[storage-folder-equals-folder\] /m);
  assert.is(bad.stderr, '');
});

test.run();
