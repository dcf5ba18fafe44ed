import { DAEMON_OPTIONS, daemonFor } from '../daemon-client.js';
import { listOption, stringOption, type Command } from '../command.js';
import { EXIT, UserError } from '../errors.js';
import { show } from '../output.js';

export const sendCommand: Command = {
  name: 'send',
  summary: "Queue an email in the daemon's outbox (sent by the SMTP server the From address belongs to)",
  usage:
    'mailctl send [--server URL] [--state-dir DIR] [--token-file FILE] [--from ADDR] --to ADDR [--to ADDR...] ' +
    '[--cc ADDR] [--bcc ADDR] [--subject S] (--text T | --html H) [--in-reply-to KEY] [--template]',
  options: {
    ...DAEMON_OPTIONS,
    from: { type: 'string' },
    to: { type: 'string', multiple: true },
    cc: { type: 'string', multiple: true },
    bcc: { type: 'string', multiple: true },
    subject: { type: 'string' },
    text: { type: 'string' },
    html: { type: 'string' },
    'in-reply-to': { type: 'string' },
    template: { type: 'boolean' },
  },
  async run({ values, output, io }) {
    const to = listOption(values, 'to');
    if (!to.length) throw new UserError(`give at least one --to ADDR\nusage: ${sendCommand.usage}`);
    const text = stringOption(values, 'text');
    const html = stringOption(values, 'html');
    if ((text === undefined) === (html === undefined))
      throw new UserError(`give exactly one of --text or --html\nusage: ${sendCommand.usage}`);
    const body = {
      ...(stringOption(values, 'from') !== undefined && { from: stringOption(values, 'from') }),
      to,
      ...(listOption(values, 'cc').length && { cc: listOption(values, 'cc') }),
      ...(listOption(values, 'bcc').length && { bcc: listOption(values, 'bcc') }),
      subject: stringOption(values, 'subject') ?? '',
      ...(text !== undefined && { text }),
      ...(html !== undefined && { html }),
      ...(stringOption(values, 'in-reply-to') !== undefined && { inReplyTo: stringOption(values, 'in-reply-to') }),
      kind: values.template === true ? 'template' : 'agent',
    };
    const daemon = await daemonFor(values, io.env);
    const { status, body: answer } = await daemon.request<{
      id?: string;
      messageId?: string;
      server?: string;
      from?: string;
      error?: string;
    }>('POST', '/v1/outbound', body);
    if (status !== 202)
      throw new UserError(`the daemon refused the message (${status}): ${answer.error ?? JSON.stringify(answer)}`);
    show(output, answer, {
      text: () =>
        output.out(`queued ${answer.id} from ${answer.from} via ${answer.server} (Message-ID ${answer.messageId})`),
    });
    return EXIT.ok;
  },
};
