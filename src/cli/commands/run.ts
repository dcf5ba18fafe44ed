import path from 'node:path';
import { DEFAULT_DIR } from '../../config/files.js';
import { loadSystemSmtp } from '../../config/load.js';
import { renderDiagnosticsText } from '../render/diagnostics.js';
import { isLoopback, stateDirFrom } from '../../api/discovery.js';
import { LockHeldError } from '../../store/ports.js';
import { LOG_LEVELS, stringOption, type Command } from '../command.js';
import { EXIT, UserError } from '../errors.js';

export const DEFAULT_LISTEN = '127.0.0.1:8425';

export function parseListen(text: string, allowRemote: boolean): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!host || !Number.isInteger(port) || port > 65535)
    throw new UserError(`--listen must be HOST:PORT, not "${text}"`);
  if (!isLoopback(host) && !allowRemote) {
    throw new UserError(
      `--listen ${text} is not a loopback address; add --allow-remote to accept API connections from other hosts`,
    );
  }
  return { host, port };
}

/** A duration flag: `300`, `300s`, `5m`, `1h` or `500ms` (a bare number is seconds); at least a second. */
export function parseDuration(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's']! : NaN;
  if (!(ms >= 1000))
    throw new UserError(`--${flag} must be a duration of at least 1s like 30s, 5m or 1h, not "${text}"`);
  return ms;
}

export const runCommand: Command = {
  name: 'run',
  summary: 'Run the daemon: own the running loops and apply the folder',
  usage:
    'mailctl run --dir DIR [--state-dir DIR] [--listen HOST:PORT [--allow-remote]] [--no-watch] [--save-failed-as-disabled] [--system-smtp FILE] [--secrets-dir DIR] [--secret-env-prefix PREFIX] [--allow-empty] [--allow-mass-delete] [--smtp-check-interval DURATION] [--outbox-max N] [--log-level LEVEL]',
  options: {
    dir: { type: 'string' },
    'state-dir': { type: 'string' },
    listen: { type: 'string' },
    'allow-remote': { type: 'boolean' },
    'no-watch': { type: 'boolean' },
    'save-failed-as-disabled': { type: 'boolean' },
    'system-smtp': { type: 'string' },
    'secrets-dir': { type: 'string' },
    'secret-env-prefix': { type: 'string' },
    'allow-empty': { type: 'boolean' },
    'allow-mass-delete': { type: 'boolean' },
    'smtp-check-interval': { type: 'string' },
    'outbox-max': { type: 'string' },
    'log-level': { type: 'string' },
  },
  async run({ values, output, io }) {
    const listen = parseListen(stringOption(values, 'listen') ?? DEFAULT_LISTEN, values['allow-remote'] === true);
    const logLevel = stringOption(values, 'log-level') ?? 'info';
    if (!(LOG_LEVELS as readonly string[]).includes(logLevel))
      throw new UserError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
    const checkInterval = stringOption(values, 'smtp-check-interval');
    const smtpCheckIntervalMs =
      checkInterval === undefined ? undefined : parseDuration('smtp-check-interval', checkInterval);
    const outboxMaxText = stringOption(values, 'outbox-max');
    const outboxMax = outboxMaxText === undefined ? undefined : Number(outboxMaxText);
    if (outboxMax !== undefined && !(Number.isInteger(outboxMax) && outboxMax >= 1))
      throw new UserError(`--outbox-max must be a whole number of messages (at least 1), not "${outboxMaxText}"`);
    const systemSmtpFile = stringOption(values, 'system-smtp');
    let systemSmtp = null;
    if (systemSmtpFile) {
      const loaded = await loadSystemSmtp(systemSmtpFile);
      if (!loaded.server) {
        renderDiagnosticsText(output, loaded.diagnostics);
        throw new UserError(`--system-smtp ${systemSmtpFile} is not a valid smtp server`);
      }
      systemSmtp = loaded.server;
    }
    // Loaded on demand: the daemon pulls in imapflow, pino and chokidar, which one-shot commands do not need.
    const { startDaemon } = await import('../../runtime/daemon/start.js');
    let daemon;
    try {
      daemon = await startDaemon({
        dir: stringOption(values, 'dir') ?? DEFAULT_DIR,
        stateDir: stateDirFrom(stringOption(values, 'state-dir'), io.env),
        listen,
        watch: values['no-watch'] !== true,
        saveFailedAsDisabled: values['save-failed-as-disabled'] === true,
        allowEmpty: values['allow-empty'] === true,
        allowMassDelete: values['allow-mass-delete'] === true,
        secretsDir: path.resolve(stringOption(values, 'secrets-dir') ?? '/run/secrets'),
        secretEnvPrefix: stringOption(values, 'secret-env-prefix') ?? 'MAILCTL_SECRET_',
        logLevel,
        env: io.env,
        systemSmtp,
        ...(smtpCheckIntervalMs !== undefined && { smtpCheckIntervalMs }),
        ...(outboxMax !== undefined && { outboxMax }),
      });
    } catch (err) {
      if (err instanceof LockHeldError) throw new UserError(err.message, EXIT.error, 'lock-held');
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE')
        throw new UserError(`cannot listen on ${listen.host}:${listen.port}: the address is in use`);
      throw err;
    }
    output.err(`mailctl daemon listening on ${daemon.url}`);
    await new Promise<void>((resolve) => {
      const stop = () => void daemon.stop().then(resolve);
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      process.on('SIGHUP', () => void daemon.reconcile({ trigger: 'sighup' }));
    });
    return EXIT.ok;
  },
};
