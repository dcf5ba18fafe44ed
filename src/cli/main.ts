import { outputFor, parseCommandArgs, type Command, type IO } from './command.js';
import { EXIT, UserError } from './errors.js';
import { createOutput, printJson } from './output.js';
import packageJson from '../../package.json' with { type: 'json' };

/**
 * Each command is loaded only when it runs: one-shot commands then start without the parsers, validators and mail
 * libraries the others need. The order is the order of the help text.
 */
const COMMAND_MODULES: Record<string, () => Promise<Command>> = {
  validate: () => import('./commands/validate.js').then((m) => m.validateCommand),
  plan: () => import('./commands/plan.js').then((m) => m.planCommand),
  run: () => import('./commands/run.js').then((m) => m.runCommand),
  apply: () => import('./commands/apply.js').then((m) => m.applyCommand),
  status: () => import('./commands/status.js').then((m) => m.statusCommand),
  send: () => import('./commands/send.js').then((m) => m.sendCommand),
  outbox: () => import('./commands/outbox.js').then((m) => m.outboxCommand),
  quarantine: () => import('./commands/quarantine.js').then((m) => m.quarantineCommand),
  auth: () => import('./commands/auth.js').then((m) => m.authCommand),
  state: () => import('./commands/state.js').then((m) => m.stateCommand),
  store: () => import('./commands/store.js').then((m) => m.storeCommand),
  schema: () => import('./commands/schema.js').then((m) => m.schemaCommand),
  init: () => import('./commands/init.js').then((m) => m.initCommand),
  completion: () => import('./commands/completion.js').then((m) => m.completionCommand),
};

/** Every command, loaded (for help text and for tests that check examples against the real flags). */
export const loadCommands = (): Promise<Command[]> => Promise.all(Object.values(COMMAND_MODULES).map((load) => load()));

async function usage(): Promise<string> {
  const commands = await loadCommands();
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'mailctl: email-server connections as code',
    '',
    'usage: mailctl <command> [options]',
    '',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Every command takes --format text|json|github (--json), --no-color and --help.',
    'Exit codes: 0 ok, 1 error, 2 changes (plan --detailed-exitcode), 3 needs approval, 4 partly applied.',
  ].join('\n');
}

/** Runs one command line. Never throws: user mistakes become a message and an exit code. */
export async function main(
  argv: string[],
  io: IO = { stdout: process.stdout, stderr: process.stderr, env: process.env },
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    createOutput({}, io).out(await usage());
    return name === undefined ? EXIT.error : EXIT.ok;
  }
  if (name === '--version') {
    createOutput({}, io).out(packageJson.version);
    return EXIT.ok;
  }
  const load = Object.hasOwn(COMMAND_MODULES, name) ? COMMAND_MODULES[name] : undefined;
  if (!load) {
    createOutput({}, io).err(`mailctl: unknown command "${name}"\n\n${await usage()}`);
    return EXIT.error;
  }
  const command = await load();
  let output = createOutput({}, io);
  try {
    const { values, positionals } = parseCommandArgs(command, rest);
    output = outputFor(values, io);
    if (values.help) {
      output.out(`${command.summary}\n\nusage: ${command.usage}`);
      return EXIT.ok;
    }
    return await command.run({ values, positionals, output, io, commands: loadCommands });
  } catch (err) {
    if (err instanceof UserError) {
      if (output.format === 'json') printJson(output, { error: { code: err.code, message: err.message } });
      else output.err(`mailctl ${command.name}: ${err.message}`);
      return err.exitCode;
    }
    // A bug, not a user mistake: say so plainly; the stack only on request.
    output.err(`mailctl ${command.name}: internal error: ${(err as Error)?.message ?? String(err)}`);
    if (io.env.MAILCTL_DEBUG) output.err(String((err as Error)?.stack));
    return EXIT.error;
  }
}
