import type { Writable } from 'node:stream';
import { UserError } from './errors.js';

export type Format = 'text' | 'json' | 'github';
export const FORMAT_VERSION = '1';

/** Where and how a command prints. Renderers get this instead of reading process state themselves. */
export interface Output {
  format: Format;
  color: boolean;
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
}

export function resolveFormat(flags: { format?: string; json?: boolean }, env: NodeJS.ProcessEnv): Format {
  if (flags.format !== undefined) {
    if (flags.format === 'text' || flags.format === 'json' || flags.format === 'github') return flags.format;
    throw new UserError(`--format must be text, json or github, not "${flags.format}"`);
  }
  if (flags.json) return 'json';
  return env.GITHUB_ACTIONS === 'true' ? 'github' : 'text';
}

/** Order: --no-color, then NO_COLOR, then FORCE_COLOR, then whether stdout is a terminal. */
export function resolveColor(noColorFlag: boolean, env: NodeJS.ProcessEnv, stream: { isTTY?: boolean }): boolean {
  if (noColorFlag) return false;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true;
  return Boolean(stream.isTTY) && env.TERM !== 'dumb';
}

export function createOutput(
  flags: { format?: string; json?: boolean; 'no-color'?: boolean },
  io: { stdout: Writable & { isTTY?: boolean }; stderr: Writable; env: NodeJS.ProcessEnv },
): Output {
  return {
    format: resolveFormat(flags, io.env),
    color: resolveColor(Boolean(flags['no-color']), io.env, io.stdout),
    out: (text) => void io.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
    err: (text) => void io.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
    env: io.env,
  };
}

export const printJson = (output: Output, value: Record<string, unknown>): void =>
  output.out(JSON.stringify({ formatVersion: FORMAT_VERSION, ...value }, null, 2));

/**
 * Prints a command's result in the chosen format, one helper for all: `json` as it is (with `formatVersion`), text
 * through `text`, GitHub through `github` (annotations) or else the text view.
 */
export function show(
  output: Output,
  json: Record<string, unknown>,
  views: { text: () => void; github?: () => void },
): void {
  if (output.format === 'json') printJson(output, json);
  else if (output.format === 'github' && views.github) views.github();
  else views.text();
}

const CODES = {
  red: [31, 39],
  yellow: [33, 39],
  green: [32, 39],
  cyan: [36, 39],
  bold: [1, 22],
  dim: [2, 22],
} as const;
export type Paint = (style: keyof typeof CODES, text: string) => string;

export const painter =
  (enabled: boolean): Paint =>
  (style, text) =>
    enabled ? `\u001b[${CODES[style][0]}m${text}\u001b[${CODES[style][1]}m` : text;

/** GitHub workflow-command escaping (actions/toolkit `command.ts`). */
export const escapeData = (s: string) => s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
export const escapeProperty = (s: string) => escapeData(s).replace(/:/g, '%3A').replace(/,/g, '%2C');
