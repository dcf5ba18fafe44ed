import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Writable } from 'node:stream';
import { UserError } from './errors.js';
import { createOutput, type Output } from './output.js';

export interface IO {
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

type OptionSpecs = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  name: string;
  summary: string;
  usage: string;
  options: OptionSpecs;
  /** Words that may come first among the positionals (`quarantine list`), for shell completion. */
  subcommands?: readonly string[];
  /** Positional arguments allowed (at most this many). */
  positionals?: number;
  run(context: {
    values: Values;
    positionals: string[];
    output: Output;
    io: IO;
    /** Every command (for help and completion), loaded on demand. */
    commands: () => Promise<Command[]>;
  }): Promise<number>;
}

/** `run --log-level` values (pino's levels). */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Options every command takes. */
export const COMMON_OPTIONS: OptionSpecs = {
  format: { type: 'string' },
  json: { type: 'boolean' },
  'no-color': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

export function parseCommandArgs(command: Command, argv: string[]): { values: Values; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { ...COMMON_OPTIONS, ...command.options },
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length > (command.positionals ?? 0)) {
      throw new UserError(`unexpected argument "${positionals[command.positionals ?? 0]}"\nusage: ${command.usage}`);
    }
    return { values: values as Values, positionals };
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${(err as Error).message.replace(/\. To specify.*$/s, '')}\nusage: ${command.usage}`);
  }
}

export function outputFor(values: Values, io: IO): Output {
  return createOutput(
    {
      format: values.format as string | undefined,
      json: values.json === true,
      'no-color': values['no-color'] === true,
    },
    io,
  );
}

export const stringOption = (values: Values, name: string): string | undefined => {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
};
export const listOption = (values: Values, name: string): string[] => {
  const v = values[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
};
