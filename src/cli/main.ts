import { outputFor, parseCommandArgs, type Command, type IO } from './command.js';
import { planCommand } from './commands/plan.js';
import { schemaCommand } from './commands/schema.js';
import { stateCommand } from './commands/state.js';
import { validateCommand } from './commands/validate.js';
import { applyCommand } from './commands/apply.js';
import { runCommand } from './commands/run.js';
import { statusCommand } from './commands/status.js';
import { EXIT, UserError } from './errors.js';
import { createOutput, printJson } from './output.js';

const COMMANDS: Command[] = [validateCommand, planCommand, runCommand, applyCommand, statusCommand, stateCommand, schemaCommand];

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'mailctl: email-server connections as code',
    '',
    'usage: mailctl <command> [options]',
    '',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Every command takes --format text|json|github (--json), --no-color and --help.',
    'Exit codes: 0 ok, 1 error, 2 changes (plan --detailed-exitcode), 3 needs approval, 4 partly applied.',
  ].join('\n');
}

/** Runs one command line. Never throws: user mistakes become a message and an exit code. */
export async function main(argv: string[], io: IO = { stdout: process.stdout, stderr: process.stderr, env: process.env }): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    createOutput({}, io).out(usage());
    return name === undefined ? EXIT.error : EXIT.ok;
  }
  if (name === '--version') {
    createOutput({}, io).out(process.env.npm_package_version ?? '0.1.0');
    return EXIT.ok;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    createOutput({}, io).err(`mailctl: unknown command "${name}"\n\n${usage()}`);
    return EXIT.error;
  }
  let output = createOutput({}, io);
  try {
    const { values, positionals } = parseCommandArgs(command, rest);
    output = outputFor(values, io);
    if (values.help) {
      output.out(`${command.summary}\n\nusage: ${command.usage}`);
      return EXIT.ok;
    }
    return await command.run({ values, positionals, output, io });
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
