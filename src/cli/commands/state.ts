import { serializeStateFile } from '../../plan/planfile.js';
import type { Command } from '../command.js';
import { DAEMON_OPTIONS, daemonFor, fetchObservedState } from '../daemon-client.js';
import { EXIT, UserError } from '../errors.js';

export const stateCommand: Command = {
  name: 'state',
  summary: 'state pull: print the running state of the daemon as a state file (for plan --state FILE)',
  usage: 'mailctl state pull [--server URL] [--state-dir DIR] [--token-file FILE] > FILE',
  options: { ...DAEMON_OPTIONS },
  subcommands: ['pull'],
  positionals: 1,
  async run({ values, positionals, output, io }) {
    const [sub] = positionals;
    if (sub !== 'pull') {
      throw new UserError(
        `${sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`}\nusage: mailctl state ` +
          'pull [--server URL] [--state-dir DIR] [--token-file FILE] > FILE',
      );
    }
    const client = await daemonFor(values, io.env);
    const { state, store } = await fetchObservedState(client);
    // The state file is JSON whatever --format says: it is meant to be saved and read back by plan --state FILE.
    output.out(serializeStateFile(state, store ?? undefined));
    return EXIT.ok;
  },
};
