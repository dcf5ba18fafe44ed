/**
 * The plan as GitHub-flavoured Markdown for the job summary (`GITHUB_STEP_SUMMARY`): a heading, the summary line, a
 * table with one row per change, and each server's diff folded in `<details>`.
 */
import { ACTION_SYMBOL, type Plan } from '../../plan/model.js';
import { describeAction, NO_CHANGES, serverDiff, summaryLine } from './plan-text.js';

export interface MarkdownRenderOptions {
  /** The heading; default `mailctl plan`. */
  title?: string;
  /** A line under the heading, e.g. which folder was compared with which running state. Shown as is (Markdown). */
  subtitle?: string;
}

const escapeHtml = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
/** Text in a table cell: no HTML, no cell breaks, no line breaks. */
const cell = (s: string): string => escapeHtml(s).replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
/** Inline code that survives any backticks in the text. */
function code(s: string): string {
  const longest = Math.max(0, ...(s.match(/`+/g) ?? []).map((run) => run.length));
  const ticks = '`'.repeat(longest + 1);
  return longest ? `${ticks} ${s} ${ticks}` : `${ticks}${s}${ticks}`;
}
/** A fence longer than any run of backticks inside the block. */
function fence(body: string): string {
  const longest = Math.max(0, ...(body.match(/`{3,}/g) ?? []).map((run) => run.length));
  return '`'.repeat(Math.max(3, longest + 1));
}

/** Pure: the same plan always gives the same Markdown (ends with a newline, ready to append). */
export function renderPlanMarkdown(plan: Plan, options: MarkdownRenderOptions = {}): string {
  const out: string[] = [`## ${options.title ?? 'mailctl plan'}`, ''];
  if (options.subtitle) out.push(options.subtitle, '');
  if (plan.changes.length === 0) {
    out.push(NO_CHANGES, '');
    return `${out.join('\n')}\n`;
  }
  out.push(`**${summaryLine(plan)}**`, '');
  out.push('| | Server | Action | Reason |', '| :-: | --- | --- | --- |');
  for (const change of plan.changes) {
    const symbol = ACTION_SYMBOL[change.action];
    const reasons = change.reasons.map(cell).join('<br>');
    out.push(`| ${code(symbol)} | ${code(change.id)} | ${cell(describeAction(change))} | ${reasons} |`);
  }
  if (plan.unchanged.length) out.push('', `${plan.unchanged.length} unchanged.`);
  out.push('');
  for (const change of plan.changes) {
    const symbol = ACTION_SYMBOL[change.action];
    const diff = serverDiff(change);
    out.push(
      `<details><summary><code>${escapeHtml(`${symbol} ${change.id}`)}</code> ` +
        `${escapeHtml(describeAction(change))}</summary>`,
      '',
    );
    if (diff) {
      const f = fence(diff);
      out.push(`${f}diff`, diff, f);
    } else out.push('_Configuration unchanged._');
    out.push('', '</details>', '');
  }
  return `${out.join('\n')}`;
}
