/**
 * Finds the `mailctl …` command lines in the shipped examples (workflow `run:` scripts, systemd `ExecStart=`,
 * Kubernetes `command` + `args`, the Dockerfile's ENTRYPOINT + CMD) and checks them against the real commands' options.
 */
import { readFile } from 'node:fs/promises';
import { parse, parseAllDocuments } from 'yaml';
import { COMMON_OPTIONS, parseCommandArgs, type Command } from '../../src/cli/command.js';
import { loadCommands } from '../../src/cli/main.js';

export const EXAMPLES = new URL('../../examples/', import.meta.url);
export const exampleFile = (relative: string) => new URL(relative, EXAMPLES);

export interface MailctlLine {
  source: string;
  subcommand: string;
  args: string[];
}

const OPERATORS = new Set(['|', '||', '&&', ';', '>', '>>', '<', '2>', '2>&1', '&']);
const isMailctl = (token: string) => /(^|\/)mailctl(\.js)?$/.test(token);

/** Shell words of one line: quotes removed, variables left as written (`$X` stays `$X`). */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (const m of line.matchAll(re)) words.push(m[1] ?? m[2] ?? m[3]!);
  return words;
}

/** Every `mailctl SUB ARGS…` in command position (not `--workflow mailctl`), stopping at shell operators. */
export function mailctlIn(tokens: string[], source: string): MailctlLine[] {
  const found: MailctlLine[] = [];
  tokens.forEach((token, i) => {
    // after `--` too: `tini -- mailctl run`, `kubectl exec POD -- mailctl status`
    const commandPosition = i === 0 || OPERATORS.has(tokens[i - 1]!) || ['npx', 'exec', '--'].includes(tokens[i - 1]!);
    if (!commandPosition || !isMailctl(token) || tokens[i + 1] === undefined || OPERATORS.has(tokens[i + 1]!)) return;
    const rest = tokens.slice(i + 2);
    const end = rest.findIndex((t) => OPERATORS.has(t));
    found.push({ source, subcommand: tokens[i + 1]!, args: end === -1 ? rest : rest.slice(0, end) });
  });
  return found;
}

/** A shell script's command lines: continuations joined, comments dropped. */
export const scriptLines = (script: string): string[] =>
  script
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.replace(/(^|\s)#.*$/, ''));

export async function workflowCommands(): Promise<{ workflow: any; lines: MailctlLine[] }> {
  const workflow = parse(await readFile(exampleFile('ci/github-actions.yml'), 'utf8'));
  const lines: MailctlLine[] = [];
  for (const [jobName, job] of Object.entries<any>(workflow.jobs)) {
    for (const step of job.steps) {
      if (typeof step.run !== 'string') continue;
      for (const line of scriptLines(step.run))
        lines.push(...mailctlIn(shellWords(line), `workflow ${jobName}/${step.name}`));
    }
  }
  return { workflow, lines };
}

/** The unit file as `[section] key` → values (keys may repeat, e.g. LoadCredential). */
export async function systemdUnit(): Promise<Map<string, string[]>> {
  const text = (await readFile(exampleFile('deploy/mailctl.service'), 'utf8')).replace(/\\\n/g, ' ');
  const entries = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) section = header[1]!;
    else {
      const eq = line.indexOf('=');
      const key = `[${section}] ${line.slice(0, eq)}`;
      entries.set(key, [...(entries.get(key) ?? []), line.slice(eq + 1).trim()]);
    }
  }
  return entries;
}

export async function kubernetesDocs(name: string): Promise<any[]> {
  const docs = parseAllDocuments(await readFile(exampleFile(`deploy/kubernetes/${name}`), 'utf8'));
  if (!Array.isArray(docs)) throw new Error(`${name}: not a YAML stream`);
  for (const d of docs) if (d.errors.length) throw new Error(`${name}: ${d.errors.map((e) => e.message).join('; ')}`);
  return docs.map((d) => d.toJS());
}

/** Problems of one command line: unknown subcommand, unknown flags, or arguments the command's parser refuses. */
export async function problemsOf(line: MailctlLine): Promise<string[]> {
  const commands: Command[] = await loadCommands();
  const command = commands.find((c) => c.name === line.subcommand);
  const where = `${line.source}: mailctl ${line.subcommand} ${line.args.join(' ')}`;
  if (!command) return [`${where}: no command "${line.subcommand}"`];
  const problems = line.args
    .filter((a) => a.startsWith('--'))
    .map((a) => a.slice(2).split('=')[0]!)
    .filter((flag) => !(flag in command.options) && !(flag in COMMON_OPTIONS))
    .map((flag) => `${where}: ${line.subcommand} has no --${flag}`);
  try {
    parseCommandArgs(command, line.args);
  } catch (err) {
    problems.push(`${where}: ${(err as Error).message}`);
  }
  return problems;
}

export interface DockerInstruction {
  keyword: string;
  /** The text after the keyword, continuation lines joined. */
  text: string;
  /** The exec form's words (`["a", "b"]`), or null for the shell form. */
  exec: string[] | null;
}

export interface DockerStage {
  name: string | null;
  from: string;
  instructions: DockerInstruction[];
}

/** The repository's Dockerfile by stage: comments dropped, continuation lines joined, exec forms parsed. */
export async function dockerfileStages(): Promise<DockerStage[]> {
  const text = await readFile(new URL('../../Dockerfile', import.meta.url), 'utf8');
  const lines = text.split('\n').filter((l) => !/^\s*#/.test(l));
  const stages: DockerStage[] = [];
  for (const logical of lines.join('\n').replace(/\\\n/g, ' ').split('\n')) {
    const m = /^\s*([A-Za-z]+)\s+(.*?)\s*$/.exec(logical);
    if (!m) continue;
    const keyword = m[1]!.toUpperCase();
    const rest = m[2]!;
    if (keyword === 'FROM') {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      stages.push({ from: from?.[1] ?? rest, name: from?.[2] ?? null, instructions: [] });
      continue;
    }
    const json = /(\[.*\])$/.exec(rest)?.[1];
    let exec: string[] | null = null;
    try {
      if (json) exec = JSON.parse(json) as string[];
    } catch {
      /* the shell form, e.g. a RUN whose command ends in brackets */
    }
    stages.at(-1)?.instructions.push({ keyword, text: rest, exec });
  }
  return stages;
}
