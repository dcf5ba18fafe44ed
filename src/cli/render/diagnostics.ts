import type { Diagnostic } from '../../config/diagnostics.js';
import { escapeData, escapeProperty, painter, type Output } from '../output.js';

/** GitHub shows at most 10 annotations of each severity per step; the rest are printed as plain lines. */
const ANNOTATIONS_PER_SEVERITY = 10;

export const formatDiagnostic = (d: Diagnostic): string =>
  `${d.file}:${d.line}:${d.column}: ${d.severity}[${d.code}] ${d.message}`;

export function renderDiagnosticsText(output: Output, diagnostics: readonly Diagnostic[]): void {
  const paint = painter(output.color);
  for (const d of diagnostics) {
    const label = paint(d.severity === 'error' ? 'red' : 'yellow', `${d.severity}[${d.code}]`);
    output.out(`${paint('bold', `${d.file}:${d.line}:${d.column}:`)} ${label} ${d.message}`);
  }
}

export function renderDiagnosticsGithub(output: Output, diagnostics: readonly Diagnostic[]): void {
  const used = { error: 0, warning: 0 };
  for (const d of diagnostics) {
    if (used[d.severity]++ < ANNOTATIONS_PER_SEVERITY) {
      const title = escapeProperty(`mailctl ${d.code}`);
      const props = `file=${escapeProperty(d.file)},line=${d.line},col=${d.column},title=${title}`;
      output.out(`::${d.severity} ${props}::${escapeData(d.message)}`);
    } else output.out(formatDiagnostic(d));
  }
}

export function summarizeCounts(diagnostics: readonly Diagnostic[]): string {
  const errors = diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = diagnostics.length - errors;
  return `${errors} error${errors === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'}`;
}
