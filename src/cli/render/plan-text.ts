/**
 * Text rendering of a plan, for a terminal and for CI logs: one block per change (symbol, identity, action in words,
 * reasons, and a unified diff of that server's configuration as YAML), then the summary line.
 *
 * Everything shown comes from the plan, whose configurations hold secret references only: nothing here resolves a
 * secret, so no secret value can reach the output.
 */
import { FILE_HEADERS_ONLY, formatPatch, structuredPatch } from 'diff';
import { stringify } from 'yaml';
import {
  ACTION_SYMBOL,
  effectiveAction,
  type ActionName,
  type Plan,
  type ServerChange,
  type ServerConfig,
} from '../../plan/model.js';
import { escapeData, escapeProperty, painter, type Paint } from '../output.js';

export const NO_CHANGES = 'No changes. The running servers match the folder.';
export const RESTART_MARK = '# forces restart';

const ACTION_WORDS: Record<Exclude<ActionName, 'rebind'>, string> = {
  create: 'will be created',
  update: 'will be updated in place',
  restart: 'must be restarted',
  stop: 'will be stopped',
  delete: 'will be deleted (removed from the folder)',
  start: 'will be started (re-enabled)',
  'no-op': 'stays as it is',
};

/** The action of a change in words, e.g. `will be updated in place` or `needs approval: credential rebind, ...`. */
export function describeAction(change: ServerChange): string {
  if (change.action === 'rebind') {
    const then =
      change.thenAction && change.thenAction !== 'rebind' ? wordsFor(change.thenAction, change) : 'will be applied';
    return change.approved
      ? `credential rebind approved, then ${then}`
      : `needs approval: credential rebind, then ${then}`;
  }
  return wordsFor(change.action, change);
}

function wordsFor(action: Exclude<ActionName, 'rebind'>, change: ServerChange): string {
  if (action === 'create' && change.after && !change.after.spec.enabled)
    return 'will be created, saved as disabled (enabled: false)';
  return ACTION_WORDS[action];
}

/** `summary` as the one line every plan ends with. */
export function summaryLine(plan: Plan): string {
  const s = plan.summary;
  return (
    `Plan: ${s.create} to create, ${s.update} to update, ${s.restart} to restart, ${s.stop} to stop, ` +
    `${s.delete} to delete, ${s.needApproval} need approval.`
  );
}

/** A server's configuration as the YAML a diff is made of: the spec, with the flow it routes into under `flow`. */
export function configDocument(config: ServerConfig): Record<string, unknown> {
  return { ...config.spec, ...(config.flow !== undefined && { flow: config.flow }) };
}

/**
 * Unified diff (`---`/`+++` headers and hunks) of one server between its running and desired configuration, or ''
 * when both render the same. Lines of fields in `restartFields` are marked `# forces restart` when the change
 * restarts the server.
 */
export function serverDiff(change: ServerChange, context = 3): string {
  const afterDoc = change.after ? configDocument(change.after) : undefined;
  // The running configuration is shown in the key order of the desired one, so only real changes show up.
  const beforeDoc = change.before ? orderLike(configDocument(change.before), afterDoc) : undefined;
  const oldText = beforeDoc ? toYaml(beforeDoc) : '';
  const newText = afterDoc ? toYaml(afterDoc) : '';
  if (oldText === newText) return '';
  const patch = structuredPatch(
    beforeDoc ? `running/${change.id}` : '/dev/null',
    afterDoc ? `desired/${change.id}` : '/dev/null',
    oldText,
    newText,
    undefined,
    undefined,
    { context },
  );
  const restarts = effectiveAction(change) === 'restart' ? change.restartFields : [];
  if (restarts.length) {
    const oldPaths = linePaths(oldText);
    const newPaths = linePaths(newText);
    for (const hunk of patch.hunks) {
      let oldLine = hunk.oldStart - 1;
      let newLine = hunk.newStart - 1;
      hunk.lines = hunk.lines.map((line) => {
        const kind = line[0];
        if (kind === ' ') {
          oldLine += 1;
          newLine += 1;
          return line;
        }
        if (kind !== '-' && kind !== '+') return line;
        const path = kind === '-' ? oldPaths[oldLine++] : newPaths[newLine++];
        return path && forcesRestart(path, restarts) ? `${line}  ${RESTART_MARK}` : line;
      });
    }
  }
  return formatPatch(patch, FILE_HEADERS_ONLY).replace(/\n+$/, '');
}

const toYaml = (doc: Record<string, unknown>): string => stringify(doc, { lineWidth: 0, minContentWidth: 0 });

/** Whether a YAML line at `path` (e.g. `auth.password`) belongs to one of the restart fields (same dotted form). */
const forcesRestart = (path: string, restartFields: readonly string[]): boolean =>
  restartFields.some((field) => path === field || path.startsWith(`${field}.`));

/**
 * The dotted key path of each line of block YAML as `yaml` prints it: `host`, `auth.password`, `flow.routes.queue`.
 * Sequence items count as their parent key. Good enough to attribute a line to a field, not a YAML parser.
 */
export function linePaths(text: string): string[] {
  const stack: { indent: number; key: string }[] = [];
  return text.split('\n').map((line) => {
    const match = /^( *)((?:- +)*)(.*)$/.exec(line)!;
    const content = match[3]!;
    if (content.trim() === '') return stack.map((s) => s.key).join('.');
    const indent = match[1]!.length + match[2]!.length;
    const keyMatch = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s"'#:][^:]*?):(?: |$)/.exec(content);
    // A key closes the keys at its column and deeper; a bare "- value" or a block-scalar line only those at or right
    // of where it starts, so it counts as part of the key above it.
    const closeFrom = keyMatch ? indent : match[1]!.length;
    while (stack.length && stack[stack.length - 1]!.indent >= closeFrom) stack.pop();
    if (keyMatch) stack.push({ indent, key: keyMatch[1]!.replace(/^["']|["']$/g, '') });
    return stack.map((s) => s.key).join('.');
  });
}

/** A copy of `value` whose object keys follow the order of `template` (recursively), other keys after them. */
function orderLike(value: unknown, template: unknown): Record<string, unknown> {
  return reorder(value, template) as Record<string, unknown>;
}

function reorder(value: unknown, template: unknown): unknown {
  if (Array.isArray(value))
    return value.map((item, i) => reorder(item, Array.isArray(template) ? template[i] : undefined));
  if (!isRecord(value)) return value;
  const templateKeys = isRecord(template) ? Object.keys(template) : [];
  const keys = [
    ...templateKeys.filter((k) => Object.hasOwn(value, k)),
    ...Object.keys(value).filter((k) => !templateKeys.includes(k)),
  ];
  const out: Record<string, unknown> = {};
  for (const key of keys) out[key] = reorder(value[key], isRecord(template) ? template[key] : undefined);
  return out;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const SYMBOL_STYLE: Record<ActionName, Parameters<Paint>[0]> = {
  create: 'green',
  start: 'green',
  update: 'yellow',
  restart: 'yellow',
  stop: 'red',
  delete: 'red',
  rebind: 'red',
  'no-op': 'dim',
};

export interface TextRenderOptions {
  color?: boolean;
  /** Lines of unchanged context around each change in the diffs. */
  context?: number;
}

/** The whole plan as text (no trailing newline). Pure: the same plan always gives the same text. */
export function renderPlanText(plan: Plan, options: TextRenderOptions = {}): string {
  const paint = painter(options.color ?? false);
  if (plan.changes.length === 0) return NO_CHANGES;
  const blocks = plan.changes.map((change) => renderChange(change, paint, options.context));
  return `${blocks.join('\n\n')}\n\n${paint('bold', summaryLine(plan))}`;
}

function renderChange(change: ServerChange, paint: Paint, context?: number): string {
  const symbol = ACTION_SYMBOL[change.action];
  const lines = [
    `${paint(SYMBOL_STYLE[change.action], symbol.padStart(3))} ${paint('bold', change.id)} ${describeAction(change)}`,
  ];
  for (const reason of change.reasons) lines.push(`    ${reason}`);
  const diff = serverDiff(change, context);
  if (diff) lines.push(...diff.split('\n').map((line) => `    ${paintDiffLine(line, paint)}`));
  else lines.push(`    ${paint('dim', '(configuration unchanged)')}`);
  return lines.join('\n');
}

function paintDiffLine(line: string, paint: Paint): string {
  if (line.startsWith('---') || line.startsWith('+++')) return paint('bold', line);
  if (line.startsWith('@@')) return paint('cyan', line);
  const marked = line.endsWith(RESTART_MARK);
  const body = marked ? line.slice(0, -RESTART_MARK.length) : line;
  const mark = marked ? paint('bold', RESTART_MARK) : '';
  if (line.startsWith('+')) return `${paint('green', body)}${mark}`;
  if (line.startsWith('-')) return `${paint('red', body)}${mark}`;
  return line;
}

export interface SourceLocation {
  file: string;
  line: number;
  column: number;
}

/**
 * GitHub workflow annotations for the changes a reviewer must not miss: an unapproved credential rebind and a deletion
 * are warnings, a stop and an approved rebind are notices. `locate` points an annotation at the server's file (a
 * deleted server has none).
 */
export function planAnnotations(
  plan: Plan,
  locate: (change: ServerChange) => SourceLocation | undefined = () => undefined,
): string[] {
  const out: string[] = [];
  for (const change of plan.changes) {
    let level: 'warning' | 'notice';
    let title: string;
    let message: string;
    if (change.action === 'rebind') {
      level = change.approved ? 'notice' : 'warning';
      title = change.approved
        ? `mailctl plan: credential rebind approved for ${change.id}`
        : `mailctl plan: ${change.id} needs approval (credential rebind)`;
      message = change.reasons.join('\n');
    } else if (change.action === 'delete') {
      level = 'warning';
      title = `mailctl plan: ${change.id} will be deleted`;
      message = `${change.id} ${describeAction(change)}: ${change.reasons.join('; ')}`;
    } else if (change.action === 'stop') {
      level = 'notice';
      title = `mailctl plan: ${change.id} will be stopped`;
      message = `${change.id} ${describeAction(change)}: ${change.reasons.join('; ')}`;
    } else continue;
    const where = locate(change);
    const props = [
      ...(where ? [`file=${escapeProperty(where.file)}`, `line=${where.line}`, `col=${where.column}`] : []),
      `title=${escapeProperty(title)}`,
    ];
    out.push(`::${level} ${props.join(',')}::${escapeData(message)}`);
  }
  return out;
}
