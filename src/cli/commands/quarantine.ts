import type { QuarantineListing } from '../../runtime/inbound/quarantine.js';
import { stringOption, type Command } from '../command.js';
import { locateDaemon } from '../daemon-client.js';
import { EXIT, UserError } from '../errors.js';
import { printJson } from '../output.js';
import { daemonLocation } from './state.js';

const USAGE =
  'mailctl quarantine list [--for imap/SHORTNAME] | release KEY  [--server URL] [--state-dir DIR] [--token-file FILE] [--format text|json|github]';

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
    server: { type: 'string' },
    'state-dir': { type: 'string' },
    'token-file': { type: 'string' },
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
    const client = await locateDaemon(daemonLocation(values), io.env);
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
      if (output.format === 'json') printJson(output, { quarantined: list });
      else if (!list.length) output.out('no quarantined messages');
      else
        for (const q of list)
          output.out(
            `${q.key}  ${q.server}  ${q.reason}  ${q.at}  ${q.messageId ?? '(no Message-ID)'}\n    ${q.detail}`,
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
    if (output.format === 'json') printJson(output, { released: key, server: body.server ?? null });
    else output.out(`released ${key} (${body.server}): it is processed again on the next poll`);
    return EXIT.ok;
  },
};
