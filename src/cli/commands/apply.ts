import { readFile } from 'node:fs/promises';
import { DEFAULT_DIR, folderDigest, readConfigFolder } from '../../config/files.js';
import { parsePlanFile } from '../../plan/planfile.js';
import { ACTION_SYMBOL } from '../../plan/model.js';
import type { ApplyProgress, ApplyResult } from '../../api/index.js';
import { progressLine } from '../render/progress.js';
import { DAEMON_OPTIONS, daemonFor } from '../daemon-client.js';
import { listOption, stringOption, type Command } from '../command.js';
import { EXIT, exitCodeOf, UserError } from '../errors.js';
import { painter, show, type Output } from '../output.js';
import { renderDiagnosticsGithub, renderDiagnosticsText } from '../render/diagnostics.js';

export const applyCommand: Command = {
  name: 'apply',
  summary: 'Verify and apply the folder (or a saved plan) through the daemon',
  usage:
    'mailctl apply [--dir DIR | PLANFILE] [--server URL] [--state-dir DIR] [--token-file FILE] [--dry-run] ' +
    '[--save-failed-as-disabled] [--approve-rebind TYPE/SHORTNAME]... [--reauthenticate TYPE/SHORTNAME]...',
  positionals: 1,
  options: {
    dir: { type: 'string' },
    ...DAEMON_OPTIONS,
    'dry-run': { type: 'boolean' },
    'save-failed-as-disabled': { type: 'boolean' },
    'approve-rebind': { type: 'string', multiple: true },
    reauthenticate: { type: 'string', multiple: true },
  },
  async run({ values, positionals, output, io }) {
    const planFile = positionals[0];
    if (planFile && values.dir !== undefined) throw new UserError('give either --dir or a saved plan file, not both');
    let request: Record<string, unknown>;
    if (planFile) {
      const text = await readFile(planFile, 'utf8').catch(() => {
        throw new UserError(`cannot read the plan file ${planFile}`);
      });
      const saved = parsePlanFile(text);
      if (!saved.ok) throw new UserError(`${planFile}: ${saved.error}`);
      const { plan } = saved.value;
      request = { savedPlan: { desiredDigest: plan.desiredDigest, stateDigest: plan.stateDigest } };
    } else {
      // Only the folder's identity is sent: the daemon validates and plans its own copy of the folder.
      const dir = stringOption(values, 'dir') ?? DEFAULT_DIR;
      const folder = await readConfigFolder(dir);
      const unreadable = folder.diagnostics.filter((d) => d.code === 'folder-unreadable');
      if (unreadable.length) throw new UserError(unreadable[0]!.message);
      request = { folderDigest: folderDigest(folder.files) };
    }
    const daemon = await daemonFor(values, io.env);
    // progress only where a person watches: text output with stderr on a terminal
    const progress =
      output.format === 'text' && io.stderr.isTTY && io.env.TERM !== 'dumb' ? progressLine(io.stderr) : null;
    const applyRequest = {
      ...request,
      trigger: 'cli',
      approvals: listOption(values, 'approve-rebind'),
      reauthenticate: listOption(values, 'reauthenticate'),
      dryRun: values['dry-run'] === true,
      saveFailedAsDisabled: values['save-failed-as-disabled'] === true,
    };
    const onLine = progress ? (line: unknown) => progress.update(line as ApplyProgress) : undefined;
    const answer = await daemon
      .request<ApplyResult & { error?: string }>('POST', '/v1/apply', applyRequest, undefined, onLine)
      .finally(() => progress?.done());
    const { status, body } = answer;
    if (status !== 200) throw new UserError(`the daemon refused the apply: ${body.error ?? status}`);
    const exitCode = exitCodeOf(body);
    renderApplyResult(output, body, exitCode);
    return exitCode;
  },
};

export function renderApplyResult(output: Output, result: ApplyResult, exitCode: number): void {
  const paint = painter(output.color);
  const good = exitCode === EXIT.ok;
  const shown = result.diagnostics.filter((d) => result.outcome === 'invalid' || d.severity === 'error');
  const body = () => {
    for (const change of result.plan?.changes ?? [])
      output.out(`${ACTION_SYMBOL[change.action]} ${change.id}: ${change.reasons[0] ?? change.action}`);
    for (const v of result.verifications) output.out(v.ok ? v.line : paint('red', v.line));
    const color = good ? 'green' : exitCode === EXIT.partlyApplied ? 'yellow' : 'red';
    output.out(paint(color, `${result.outcome}: ${result.message}`));
  };
  show(
    output,
    { ...result, exitCode },
    {
      text: () => (renderDiagnosticsText(output, shown), body()),
      github: () => {
        renderDiagnosticsGithub(output, shown);
        body();
        if (!good) output.out(`::error title=mailctl apply ${result.outcome}::${result.message}`);
      },
    },
  );
}
