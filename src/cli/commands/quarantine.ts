import type { QuarantineListing } from '../../api/index.js';
import { stringOption, type Command } from '../command.js';
import { DAEMON_OPTIONS, daemonFor } from '../daemon-client.js';
import { EXIT, UserError } from '../errors.js';
import { show } from '../output.js';

const USAGE =
  'mailctl quarantine list [--for imap/SHORTNAME] | release KEY  [--server URL] [--state-dir DIR] ' +
  '[--token-file FILE] [--format text|json|github]';

const errorOf = (body: unknown, status: number): string => {
  const error = (body as { error?: unknown } | null)?.error;
  return typeof error === 'string' ? error : `HTTP ${status}`;
};

/** `quarantine list` and `quarantine release KEY`: messages the inbound loops set aside, through the daemon's API. */
export const quarantineCommand: Command = {
  name: 'quarantine',
  summary: 'List quarantined inbound messages, or release one to be processed again',
  usage: USAGE,
  options: {
    ...DAEMON_OPTIONS,
    for: { type: 'string' },
  },
  subcommands: ['list', 'release'],
  positionals: 2,
  async run({ values, positionals, output, io }) {
    const [sub, key] = positionals;
    if (sub !== 'list' && sub !== 'release')
      throw new UserError(
        `${sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`}\nusage: ${USAGE}`,
      );
    if (sub === 'list' && key !== undefined) throw new UserError(`unexpected argument "${key}"\nusage: ${USAGE}`);
    if (sub === 'release' && !key)
      throw new UserError(
        `release needs the KEY of a quarantined message (see: mailctl quarantine list)\nusage: ${USAGE}`,
      );
    const client = await daemonFor(values, io.env);
    if (sub === 'list') {
      const server = stringOption(values, 'for');
      const { status, body } = await client.request<{ quarantined?: QuarantineListing[] }>(
        'GET',
        `/v1/quarantine${server ? `?server=${encodeURIComponent(server)}` : ''}`,
      );
      if (status !== 200 || !Array.isArray(body.quarantined))
        throw new UserError(
          `the daemon at ${client.url} did not list the quarantine: ${errorOf(body, status)}`,
          EXIT.error,
          'daemon-error',
        );
      const list = body.quarantined;
      show(
        output,
        { quarantined: list },
        {
          text: () => {
            if (!list.length) output.out('no quarantined messages');
            for (const q of list)
              output.out(
                `${q.key}  ${q.server}  ${q.reason}  ${q.at}  ${q.messageId ?? '(no Message-ID)'}\n    ${q.detail}`,
              );
          },
        },
      );
      return EXIT.ok;
    }
    const { status, body } = await client.request<{ released?: string; server?: string }>(
      'POST',
      '/v1/quarantine/release',
      { key },
    );
    if (status === 404) throw new UserError(errorOf(body, status), EXIT.error, 'not-quarantined');
    if (status !== 200)
      throw new UserError(
        `the daemon at ${client.url} did not release ${key}: ${errorOf(body, status)}`,
        EXIT.error,
        'daemon-error',
      );
    show(
      output,
      { released: key, server: body.server ?? null },
      {
        text: () => output.out(`released ${key} (${body.server}): it is processed again on the next poll`),
      },
    );
    return EXIT.ok;
  },
};
