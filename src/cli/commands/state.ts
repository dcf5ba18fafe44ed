import type { ObservedState } from '../../plan/model.js';
import { checkObservedState, serializeStateFile } from '../../plan/planfile.js';
import { stringOption, type Command } from '../command.js';
import { locateDaemon, type DaemonClient, type DaemonLocation } from '../daemon-client.js';
import { EXIT, UserError } from '../errors.js';

/** Asks the daemon for its running state (`GET /v1/state`) and checks the answer before anyone plans against it. */
export async function fetchObservedState(client: DaemonClient): Promise<ObservedState> {
  const { status, body } = await client.request<unknown>('GET', '/v1/state', undefined, 30_000);
  if (status !== 200) {
    const error = (body as { error?: unknown } | null)?.error;
    const message = typeof error === 'string' ? error : (error as { message?: unknown } | undefined)?.message;
    const detail =
      typeof message === 'string' ? message : typeof body === 'string' && body ? body.slice(0, 200) : `HTTP ${status}`;
    throw new UserError(`the daemon at ${client.url} did not return its state: ${detail}`, EXIT.error, 'daemon-error');
  }
  const answer = body as { formatVersion?: unknown; state?: unknown } | null;
  if (typeof answer !== 'object' || answer === null || answer.formatVersion !== '1') {
    throw new UserError(
      `the daemon at ${client.url} answered GET /v1/state with an unsupported format (expected formatVersion "1"); are mailctl and the daemon the same version?`,
      EXIT.error,
      'daemon-error',
    );
  }
  const problem = checkObservedState(answer.state);
  if (problem)
    throw new UserError(
      `the daemon at ${client.url} returned a malformed state: ${problem}`,
      EXIT.error,
      'daemon-error',
    );
  return answer.state as ObservedState;
}

export const daemonLocation = (values: Parameters<typeof stringOption>[0]): DaemonLocation => {
  const server = stringOption(values, 'server');
  const stateDir = stringOption(values, 'state-dir');
  const tokenFile = stringOption(values, 'token-file');
  return {
    ...(server !== undefined && { server }),
    ...(stateDir !== undefined && { stateDir }),
    ...(tokenFile !== undefined && { tokenFile }),
  };
};

export const stateCommand: Command = {
  name: 'state',
  summary: 'state pull: print the running state of the daemon as a state file (for plan --state FILE)',
  usage: 'mailctl state pull [--server URL] [--state-dir DIR] [--token-file FILE] > FILE',
  options: { server: { type: 'string' }, 'state-dir': { type: 'string' }, 'token-file': { type: 'string' } },
  subcommands: ['pull'],
  positionals: 1,
  async run({ values, positionals, output, io }) {
    const [sub] = positionals;
    if (sub !== 'pull') {
      throw new UserError(
        `${sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`}\nusage: mailctl state pull [--server URL] [--state-dir DIR] [--token-file FILE] > FILE`,
      );
    }
    const client = await locateDaemon(daemonLocation(values), io.env);
    const state = await fetchObservedState(client);
    // The state file is JSON whatever --format says: it is meant to be saved and read back by plan --state FILE.
    output.out(serializeStateFile(state));
    return EXIT.ok;
  },
};
