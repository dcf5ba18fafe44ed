/**
 * `mailctl completion bash|zsh|fish`: the bash script is run for real (sourced, COMP_WORDS/COMP_CWORD set, the
 * function called, COMPREPLY read) with the real `mailctl` on PATH answering `completion --servers`; the zsh and fish
 * scripts are syntax-checked by their shells when installed, and fish's own completer is asked as well.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { COMMON_OPTIONS } from '../../src/cli/command.js';
import { FLAG_VALUES, HIDDEN_FLAGS, POSITIONAL_VALUES } from '../../src/cli/completion.js';
import { loadCommands } from '../../src/cli/main.js';
import { resolveFormat } from '../../src/cli/output.js';
import { BIN, cli } from '../harness/mailctl.js';

const run = promisify(execFile);
const EXAMPLES = fileURLToPath(new URL('../../examples/servers.d', import.meta.url));
const EXAMPLE_IDS = ['imap/sales', 'imap/support', 'smtp/noreply', 'smtp/sales', 'smtp/support'];

let root = '';
let cwd = ''; // holds servers.d (a copy of the examples) and an empty folder `other`
let env: NodeJS.ProcessEnv = {};
const scripts: Record<string, string> = {};

test.before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'mailctl-completion-'));
  cwd = path.join(root, 'work');
  await cp(EXAMPLES, path.join(cwd, 'servers.d'), { recursive: true });
  await mkdir(path.join(cwd, 'other'));
  const bin = path.join(root, 'bin');
  await mkdir(bin);
  await symlink(BIN, path.join(bin, 'mailctl'));
  env = { ...process.env, NO_COLOR: '1', PATH: `${bin}:${process.env.PATH}` };
  for (const shell of ['bash', 'zsh', 'fish']) {
    const r = await cli(['completion', shell], env);
    assert.is(r.code, 0, r.stderr);
    scripts[shell] = path.join(root, `mailctl.${shell}`);
    await writeFile(scripts[shell], r.stdout);
  }
});
test.after(() => rm(root, { recursive: true, force: true }));

/** What bash completes for the command line `words` (the last one is the word being completed). */
async function bashComplete(...words: string[]): Promise<string[]> {
  const script = `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _mailctl; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const { stdout } = await run('bash', ['-c', script, 'bash', scripts.bash!, ...words], { cwd, env });
  return stdout.split('\n').filter(Boolean).sort();
}

test('completion --servers lists the type/shortName of the folder, also from a file that does not validate', async () => {
  const r = await cli(['completion', '--servers', '--dir', EXAMPLES], env);
  assert.is(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim().split('\n'), EXAMPLE_IDS);
  await writeFile(
    path.join(cwd, 'other', 'half-done.yaml'),
    'kind: EmailServer\ntype: imap\nshortName: half-done\nhost: 42\n',
  );
  const broken = await cli(['completion', '--servers', '--dir', path.join(cwd, 'other')], env);
  assert.is(broken.stdout, 'imap/half-done\n');
  await rm(path.join(cwd, 'other', 'half-done.yaml'));
  const none = await cli(['completion', '--servers', '--dir', path.join(root, 'missing')], env);
  assert.is(none.code, 0);
  assert.is(none.stdout, '');
});

test('an unknown shell is refused with the ones there are', async () => {
  const r = await cli(['completion', 'powershell'], env);
  assert.is(r.code, 1);
  assert.match(r.stderr, /no completion for "powershell": bash, zsh or fish/);
});

test('bash: the commands, and each command its own flags (the common ones too), never the hidden ones', async () => {
  const commands = await loadCommands();
  assert.equal(await bashComplete('mailctl', ''), [...commands.map((c) => c.name), '--help', '--version'].sort());
  assert.equal(await bashComplete('mailctl', 'qu'), ['quarantine']);
  for (const command of commands) {
    const hidden = HIDDEN_FLAGS[command.name] ?? [];
    const flags = Object.keys({ ...command.options, ...COMMON_OPTIONS })
      .filter((f) => !hidden.includes(f))
      .map((f) => `--${f}`);
    assert.equal(await bashComplete('mailctl', command.name, '--'), flags.sort(), command.name);
  }
  assert.not.ok((await bashComplete('mailctl', 'completion', '--')).includes('--servers'));
  assert.equal(await bashComplete('mailctl', 'apply', '--d'), ['--dir', '--dry-run']);
});

test('bash: server ids from servers.d, from the --dir given, and only IMAP ones for quarantine --for', async () => {
  assert.equal(await bashComplete('mailctl', 'apply', '--approve-rebind', ''), EXAMPLE_IDS);
  assert.equal(await bashComplete('mailctl', 'quarantine', 'list', '--for', ''), ['imap/sales', 'imap/support']);
  assert.equal(await bashComplete('mailctl', 'plan', '--approve-rebind', 'smtp/s'), ['smtp/sales', 'smtp/support']);
  // --dir names the folder: an empty one has no ids, whatever servers.d holds
  assert.equal(await bashComplete('mailctl', 'apply', '--dir', 'other', '--approve-rebind', ''), []);
  assert.equal(await bashComplete('mailctl', 'apply', '--dir', EXAMPLES, '--approve-rebind', 'imap/su'), [
    'imap/support',
  ]);
  // a flag's value is not taken for the subcommand: `list` is still to come
  assert.equal(await bashComplete('mailctl', 'quarantine', '--for', 'imap/sales', ''), ['list', 'release']);
});

test('bash: subcommands, folders, files and fixed values', async () => {
  assert.equal(await bashComplete('mailctl', 'quarantine', ''), ['list', 'release']);
  assert.equal(await bashComplete('mailctl', 'outbox', ''), ['cancel', 'list']);
  assert.equal(await bashComplete('mailctl', 'state', ''), ['pull']);
  assert.equal(await bashComplete('mailctl', 'completion', ''), ['bash', 'fish', 'zsh']);
  assert.equal(await bashComplete('mailctl', 'quarantine', 'list', ''), [], 'one subcommand only');
  assert.equal(await bashComplete('mailctl', 'init', ''), ['other', 'servers.d']);
  assert.equal(await bashComplete('mailctl', 'validate', '--dir', 'ser'), ['servers.d']);
  assert.equal(await bashComplete('mailctl', 'run', '--log-level', 'd'), ['debug']);
  assert.equal(await bashComplete('mailctl', 'status', '--format', ''), ['github', 'json', 'text']);
  assert.equal(await bashComplete('mailctl', 'send', '--to', ''), [], 'an address: nothing to suggest');
});

test('the value table names real flags and commands, and the fixed values are accepted', async () => {
  const commands = await loadCommands();
  const stringFlags = new Set(
    commands.flatMap((c) =>
      Object.entries({ ...c.options, ...COMMON_OPTIONS })
        .filter(([, spec]) => spec.type === 'string')
        .map(([name]) => name),
    ),
  );
  for (const flag of Object.keys(FLAG_VALUES)) assert.ok(stringFlags.has(flag), `--${flag} takes a value somewhere`);
  for (const name of Object.keys(POSITIONAL_VALUES)) {
    const command = commands.find((c) => c.name === name);
    assert.ok((command?.positionals ?? 0) > 0 && !command?.subcommands, `${name} takes a plain positional`);
  }
  const formats = FLAG_VALUES.format?.kind === 'words' ? FLAG_VALUES.format.words : [];
  assert.ok(formats.length);
  for (const format of formats) resolveFormat({ format }, {});
  assert.throws(() => resolveFormat({ format: 'yaml' }, {}));
  const withSubcommands = commands.filter((c) => c.subcommands).map((c) => c.name);
  assert.equal(withSubcommands.sort(), ['auth', 'completion', 'outbox', 'quarantine', 'state', 'store']);
});

const shellInstalled = (shell: string) =>
  run('sh', ['-c', `command -v ${shell}`]).then(
    () => true,
    () => false,
  );

test('zsh: the script parses (zsh -n)', async () => {
  if (!(await shellInstalled('zsh'))) {
    console.log('  (skipped: zsh is not installed; apt-get install zsh to check the zsh script)');
    return;
  }
  await run('zsh', ['-n', scripts.zsh!]);
});

test('fish: the script parses (fish -n), and fish completes ids, subcommands and values with it', async () => {
  if (!(await shellInstalled('fish'))) {
    console.log('  (skipped: fish is not installed; apt-get install fish to check the fish script)');
    return;
  }
  await run('fish', ['-n', scripts.fish!]);
  const complete = async (line: string) => {
    const { stdout } = await run(
      'fish',
      ['--no-config', '-c', `source $argv[1]; complete -C $argv[2]`, scripts.fish!, line],
      {
        cwd,
        env,
      },
    );
    return stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('\t')[0]!)
      .sort();
  };
  assert.equal(await complete('mailctl quarantine list --for '), ['imap/sales', 'imap/support']);
  assert.equal(await complete(`mailctl apply --dir ${EXAMPLES} --approve-rebind smtp/`), [
    'smtp/noreply',
    'smtp/sales',
    'smtp/support',
  ]);
  assert.equal(await complete('mailctl outbox '), ['cancel', 'list']);
  assert.equal(await complete('mailctl run --log-level w'), ['warn']);
  assert.ok((await complete('mailctl ')).includes('completion'));
});

test.run();
