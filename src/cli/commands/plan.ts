import { appendFile, readFile } from 'node:fs/promises';
import { DEFAULT_DIR } from '../../config/files.js';
import { writeFileAtomic } from '../../adapters/durable-files.js';
import { loadConfig, type LoadedConfig } from '../../config/load.js';
import { storeFindings, type StoreKind } from '../../config/sinks.js';
import { computePlan } from '../../plan/compute.js';
import { desiredState, EMPTY_STATE } from '../../plan/desired.js';
import { ACTION_SYMBOL, type ObservedState, type Plan, type ServerChange } from '../../plan/model.js';
import { parseStateFile, serializePlanFile } from '../../plan/planfile.js';
import { listOption, stringOption, type Command, type Values } from '../command.js';
import { daemonFor, DAEMON_OPTIONS, fetchObservedState } from '../daemon-client.js';
import { EXIT, UserError } from '../errors.js';
import { painter, show, type Output } from '../output.js';
import { renderDiagnosticsGithub, renderDiagnosticsText, summarizeCounts } from '../render/diagnostics.js';
import { renderPlanMarkdown } from '../render/plan-markdown.js';
import { describeAction, planAnnotations, renderPlanText, type SourceLocation } from '../render/plan-text.js';

const USAGE =
  'mailctl plan [--dir DIR] [--server URL | --state FILE | --state empty] [--state-dir DIR] [--token-file FILE] ' +
  '[--out FILE] [--approve-rebind TYPE/SHORTNAME]... [--format text|json|github] [--detailed-exitcode]';

const STATE_OPTIONS_HINT =
  'plan needs the running state: start the daemon (mailctl run) or point at it with --server URL (or MAILCTL_SERVER, ' +
  'or --state-dir of a running daemon), give a state file pulled with "mailctl state pull > FILE" as --state FILE, ' +
  'or use --state empty for a first deployment';

/** Where the running state came from (shown in the output, so a reviewer knows what the plan was compared with). */
export type StateSource = { kind: 'daemon'; url: string } | { kind: 'file'; path: string } | { kind: 'empty' };

/** The plan as JSON output: every change carries its `action` (word), `symbol` and `description` (action in words). */
export function planJson(plan: Plan): Record<string, unknown> {
  return {
    ...plan,
    changes: plan.changes.map(({ id, action, ...rest }) => ({
      id,
      action,
      symbol: ACTION_SYMBOL[action],
      description: describeAction({ id, action, ...rest }),
      ...rest,
    })),
  };
}

async function observedState(
  values: Values,
  env: NodeJS.ProcessEnv,
): Promise<{ state: ObservedState; source: StateSource; store: StoreKind | null }> {
  const stateFlag = stringOption(values, 'state');
  if (stateFlag !== undefined) {
    const daemonFlags = Object.keys(DAEMON_OPTIONS).filter((f) => values[f] !== undefined);
    if (daemonFlags.length) {
      throw new UserError(
        `--state ${stateFlag} replaces the daemon: drop ` +
          `${daemonFlags.map((f) => `--${f}`).join(', ')}\nusage: ${USAGE}`,
      );
    }
    if (stateFlag === 'empty') return { state: EMPTY_STATE, source: { kind: 'empty' }, store: null };
    let text: string;
    try {
      text = await readFile(stateFlag, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new UserError(
        'cannot read the state file ' +
          `${stateFlag}${code === 'ENOENT' ? ': it does not exist' : ` (${code ?? (err as Error).message})`} ` +
          '(write one with mailctl state pull > FILE, or use --state empty)',
      );
    }
    const parsed = parseStateFile(text);
    if (!parsed.ok) throw new UserError(`--state ${stateFlag}: ${parsed.error}`, EXIT.error, 'invalid-state-file');
    return {
      state: parsed.value.state,
      source: { kind: 'file', path: stateFlag },
      store: parsed.value.store?.kind ?? null,
    };
  }
  try {
    const client = await daemonFor(values, env);
    const { state, store } = await fetchObservedState(client);
    return { state, store, source: { kind: 'daemon', url: withoutCredentials(client.url) } };
  } catch (err) {
    if (err instanceof UserError && err.code === 'daemon-unreachable') {
      throw new UserError(`${err.message}\n${STATE_OPTIONS_HINT}`, EXIT.error, err.code);
    }
    throw err;
  }
}

function describeSource(source: StateSource): string {
  if (source.kind === 'daemon') return `the running state of the daemon at ${source.url}`;
  if (source.kind === 'file') return `the running state saved in ${source.path}`;
  return 'an empty running state (first deployment)';
}

/** A URL as it may be shown: without a user name or password in it. */
function withoutCredentials(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString().replace(/\/$/, '');
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//');
  }
}

/** Where an annotation about a change points: the field that matters, in the file that defines the server. */
function locator(config: LoadedConfig): (change: ServerChange) => SourceLocation | undefined {
  const byId = new Map(config.servers.map((s) => [s.id, s]));
  return (change) => {
    const server = byId.get(change.id);
    if (!server) return undefined;
    const field = change.action === 'rebind' ? ['host'] : change.action === 'stop' ? ['enabled'] : [];
    const { line, column } = field.length ? server.source.locate(field) : server.source.position;
    return { file: server.source.file, line, column };
  };
}

function reportInvalid(output: Output, dir: string, config: LoadedConfig, store?: StoreKind): number {
  const against = store ? ` for the running daemon's store (${store})` : '';
  const message = `${dir}: invalid${against} (${summarizeCounts(config.diagnostics)}); no plan was computed`;
  show(
    output,
    { valid: false, diagnostics: config.diagnostics, error: { code: 'invalid-config', message } },
    {
      text: () => (renderDiagnosticsText(output, config.diagnostics), output.out(message)),
      github: () => (renderDiagnosticsGithub(output, config.diagnostics), output.out(message)),
    },
  );
  return EXIT.error;
}

export const planCommand: Command = {
  name: 'plan',
  summary: 'Show what apply would change (offline: never resolves a secret or connects to a mail server)',
  usage: USAGE,
  options: {
    dir: { type: 'string' },
    ...DAEMON_OPTIONS,
    state: { type: 'string' },
    out: { type: 'string' },
    'approve-rebind': { type: 'string', multiple: true },
    'detailed-exitcode': { type: 'boolean' },
  },
  async run({ values, output, io }) {
    const dir = stringOption(values, 'dir') ?? DEFAULT_DIR;
    const out = stringOption(values, 'out');
    const approvals = listOption(values, 'approve-rebind');
    const config = await loadConfig(dir);
    if (!config.valid) return reportInvalid(output, dir, config);
    const { state, source, store } = await observedState(values, io.env);
    // a flow the running store cannot deliver (a postgres sink on a file store) is refused, naming the flow
    const unfit = store ? storeFindings(config.flows, store) : [];
    if (store && unfit.length)
      return reportInvalid(output, dir, { ...config, diagnostics: [...config.diagnostics, ...unfit] }, store);

    const plan = computePlan({ desired: desiredState(config.servers, config.flows), observed: state, approvals });
    const rebinds = new Set(plan.changes.filter((c) => c.action === 'rebind').map((c) => c.id));
    for (const id of approvals.filter((a) => !rebinds.has(a))) {
      output.err(`mailctl plan: warning: --approve-rebind ${id}: ${id} has no credential rebind in this plan; ignored`);
    }

    if (out !== undefined) {
      const text = serializePlanFile({ dir, createdAt: new Date(), plan });
      try {
        await writeFileAtomic(out, text);
      } catch (err) {
        throw new UserError(
          `cannot write the plan file ${out} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
        );
      }
    }

    const warnings = config.diagnostics; // valid: only warnings are left
    const paint = painter(output.color);
    const servers = `${config.servers.length} server${config.servers.length === 1 ? '' : 's'}`;
    const planText = () => {
      output.out(paint('dim', `Comparing ${dir} (${servers}) with ${describeSource(source)}.`));
      output.out('');
      output.out(renderPlanText(plan, { color: output.color }));
    };
    const saved = () =>
      out !== undefined && output.out(`\nSaved the plan to ${out}. Apply exactly this plan with: mailctl apply ${out}`);
    const json = {
      ...planJson(plan),
      dir,
      stateSource: source,
      ...(out !== undefined && { planFile: out }),
      diagnostics: warnings,
    };
    show(output, json, {
      text: () => (renderDiagnosticsText(output, warnings), planText(), saved()),
      github: () => {
        renderDiagnosticsGithub(output, warnings);
        planText();
        for (const line of planAnnotations(plan, locator(config))) output.out(line);
        saved();
      },
    });

    const summaryFile = io.env.GITHUB_STEP_SUMMARY;
    if (summaryFile) {
      const subtitle = `Folder \`${dir}\` compared with ${describeSource(source)}.`;
      try {
        await appendFile(summaryFile, `${renderPlanMarkdown(plan, { subtitle })}\n`);
      } catch (err) {
        output.err(
          `mailctl plan: warning: cannot append to GITHUB_STEP_SUMMARY ${summaryFile} ` +
            `(${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
        );
      }
    }

    if (values['detailed-exitcode'] === true) return plan.changes.length > 0 ? EXIT.changes : EXIT.ok;
    return EXIT.ok;
  },
};
