import type { OutboundView } from '../../api/index.js';
import type { Command } from '../command.js';
import { EXIT, UserError } from '../errors.js';
import { show } from '../output.js';
import { DAEMON_OPTIONS, daemonFor } from '../daemon-client.js';

export const outboxCommand: Command = {
  name: 'outbox',
  summary: "List the messages waiting in the daemon's outbox, or cancel one",
  usage: 'mailctl outbox list | cancel ID [--server URL] [--state-dir DIR] [--token-file FILE] [--format text|json]',
  options: { ...DAEMON_OPTIONS },
  subcommands: ['list', 'cancel'],
  positionals: 2,
  async run({ values, positionals, output, io }) {
    const [action, id] = positionals;
    if (action !== 'list' && action !== 'cancel')
      throw new UserError(`say "list" or "cancel ID"\nusage: ${outboxCommand.usage}`);
    if (action === 'cancel' && !id)
      throw new UserError(`cancel needs the message id (see mailctl outbox list)\nusage: ${outboxCommand.usage}`);
    if (action === 'list' && id) throw new UserError(`list takes no id\nusage: ${outboxCommand.usage}`);
    const daemon = await daemonFor(values, io.env);
    if (action === 'cancel') {
      const { status, body } = await daemon.request<OutboundView & { error?: string }>(
        'POST',
        `/v1/outbound/${encodeURIComponent(id!)}/cancel`,
      );
      if (status !== 200) throw new UserError(`cannot cancel ${id} (${status}): ${body.error ?? JSON.stringify(body)}`);
      show(output, { ...body }, { text: () => output.out(`cancelled ${id}`) });
      return EXIT.ok;
    }
    const { status, body } = await daemon.request<{ outbox: OutboundView[]; quarantined: number; error?: string }>(
      'GET',
      '/v1/outbound',
    );
    if (status !== 200) throw new UserError(`the daemon answered ${status}: ${body.error ?? ''}`);
    show(output, body, {
      text: () => {
        if (!body.outbox.length) output.out('the outbox is empty');
        for (const m of body.outbox) {
          output.out(
            `${m.id}  ${m.state.padEnd(7)}  ${m.from} → ${m.to.join(', ')}  ${JSON.stringify(m.subject)}  via ` +
              `${m.server}`,
          );
          if (m.lastError) output.out(`    attempt ${m.attempts}, next ${m.nextAttemptAt ?? 'now'}: ${m.lastError}`);
        }
        if (body.quarantined)
          output.out(
            `${body.quarantined} damaged outbox file(s) quarantined at start (see <state>/outbox/quarantine/)`,
          );
      },
    });
    return EXIT.ok;
  },
};
