import { hostname } from 'node:os';
import path from 'node:path';
import { DEFAULT_DIR } from '../../config/files.js';
import { loadSystemSmtp } from '../../config/load.js';
import { renderDiagnosticsText } from '../render/diagnostics.js';
import { isLoopback, stateDirFrom } from '../../api/discovery.js';
import { readFile } from 'node:fs/promises';
import { parseStoreSpec, type StoreSpec } from '../../store/open.js';
import { LockHeldError, StoreError } from '../../store/errors.js';
import { DEFAULT_LEASE_TTL_S, MIN_LEASE_TTL_S } from '../../store/group-ports.js';
import { listOption, LOG_LEVELS, stringOption, type Command, type Values } from '../command.js';
import { EXIT, UserError } from '../errors.js';

export const DEFAULT_LISTEN = '127.0.0.1:8425';
export const DEFAULT_SECRETS_DIR = '/run/secrets';
/**
 * Where a tlsCaFile may lie without --ca-dir, besides the secrets folder: the system's trust store, and the folders its
 * links lead into (update-ca-certificates links each PEM in /etc/ssl/certs to one of them).
 */
export const SYSTEM_CA_DIRS = ['/etc/ssl/certs', '/usr/share/ca-certificates', '/usr/local/share/ca-certificates'];
/** Where a flow may deliver without --sink-root, besides the state folder. */
export const DEFAULT_SINK_ROOT = '/var/lib/mailctl';

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

/** `--store`/`MAILCTL_STORE` and `--store-schema`, checked before anything starts. */
function storeSpecOf(store: string | undefined, schema: string | undefined): StoreSpec {
  try {
    return parseStoreSpec(store, schema);
  } catch (err) {
    if (err instanceof StoreError) throw new UserError(err.message, EXIT.error, err.code);
    throw err;
  }
}

/** The API token of `--token-file`: its first line, which must not be empty. */
async function readToken(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new UserError(`cannot read --token-file ${file} (${err.code ?? err.message})`);
  });
  const token = text.split('\n')[0]!.trim();
  if (token.length < 16) throw new UserError(`--token-file ${file} must hold a token of at least 16 characters`);
  return token;
}

/** A duration flag: `300`, `300s`, `5m`, `1h` or `500ms` (a bare number is seconds); at least a second. */
export function parseDuration(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's']! : NaN;
  if (!(ms >= 1000))
    throw new UserError(`--${flag} must be a duration of at least 1s like 30s, 5m or 1h, not "${text}"`);
  return ms;
}

/**
 * The daemon as a replica of its PostgreSQL store's group: `--replica-id`, `--lease-ttl`, `--sink-shared`,
 * `--advertise-url`.
 */
function replicaOf(
  values: Values,
  store: StoreSpec,
): { id: string; leaseTtlS: number; sinkShared: boolean; advertiseUrl?: string } | null {
  const given = ['replica-id', 'lease-ttl', 'sink-shared', 'advertise-url'].filter((f) => values[f] !== undefined);
  if (store.kind !== 'postgres') {
    if (given.length)
      throw new UserError(`--${given[0]} applies to a PostgreSQL store (--store postgres://…), which replicas share`);
    return null;
  }
  const id = stringOption(values, 'replica-id') ?? hostname();
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(id))
    throw new UserError(`--replica-id must be letters, digits, '.', '_' or '-' (at most 63), not "${id}"`);
  const ttlText = stringOption(values, 'lease-ttl') ?? String(DEFAULT_LEASE_TTL_S);
  const leaseTtlS = Number(ttlText);
  if (!(Number.isInteger(leaseTtlS) && leaseTtlS >= MIN_LEASE_TTL_S && leaseTtlS <= 600))
    throw new UserError(`--lease-ttl must be whole seconds from ${MIN_LEASE_TTL_S} to 600, not "${ttlText}"`);
  const advertiseUrl = stringOption(values, 'advertise-url');
  if (advertiseUrl !== undefined && !/^https?:\/\/[^/\s]+\/?$/.test(advertiseUrl))
    throw new UserError(`--advertise-url must be http(s)://HOST:PORT, not "${advertiseUrl}"`);
  return {
    id,
    leaseTtlS,
    sinkShared: values['sink-shared'] === true,
    ...(advertiseUrl !== undefined && { advertiseUrl: advertiseUrl.replace(/\/$/, '') }),
  };
}

export const runCommand: Command = {
  name: 'run',
  summary: 'Run the daemon: own the running loops and apply the folder',
  usage:
    'mailctl run --dir DIR [--state-dir DIR] [--store file|postgres://USER@HOST:PORT/DB ' +
    '[--store-schema NAME]] [--token-file FILE] [--listen HOST:PORT [--allow-remote]] [--public-host NAME]... ' +
    '[--no-watch] [--save-failed-as-disabled] [--system-smtp FILE] [--secrets-dir DIR] ' +
    '[--secret-env-prefix PREFIX] [--ca-dir DIR]... [--sink-root DIR]... [--credentials-key-file FILE] ' +
    '[--allow-empty] [--allow-mass-delete] [--smtp-check-interval DURATION] [--outbox-max N] [--replica-id ID] ' +
    '[--lease-ttl SECONDS] [--sink-shared] [--advertise-url URL] [--log-level LEVEL]',
  options: {
    dir: { type: 'string' },
    'state-dir': { type: 'string' },
    store: { type: 'string' },
    'store-schema': { type: 'string' },
    'token-file': { type: 'string' },
    listen: { type: 'string' },
    'allow-remote': { type: 'boolean' },
    'public-host': { type: 'string', multiple: true },
    'no-watch': { type: 'boolean' },
    'save-failed-as-disabled': { type: 'boolean' },
    'system-smtp': { type: 'string' },
    'secrets-dir': { type: 'string' },
    'secret-env-prefix': { type: 'string' },
    'ca-dir': { type: 'string', multiple: true },
    'sink-root': { type: 'string', multiple: true },
    'credentials-key-file': { type: 'string' },
    'allow-empty': { type: 'boolean' },
    'allow-mass-delete': { type: 'boolean' },
    'smtp-check-interval': { type: 'string' },
    'outbox-max': { type: 'string' },
    'replica-id': { type: 'string' },
    'lease-ttl': { type: 'string' },
    'sink-shared': { type: 'boolean' },
    'advertise-url': { type: 'string' },
    'log-level': { type: 'string' },
  },
  async run({ values, output, io }) {
    const listen = parseListen(stringOption(values, 'listen') ?? DEFAULT_LISTEN, values['allow-remote'] === true);
    const logLevel = stringOption(values, 'log-level') ?? 'info';
    if (!(LOG_LEVELS as readonly string[]).includes(logLevel))
      throw new UserError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
    const secretEnvPrefix = stringOption(values, 'secret-env-prefix') ?? 'MAILCTL_SECRET_';
    // an empty prefix would let a reference name any variable of the daemon's environment
    if (secretEnvPrefix === '') throw new UserError('--secret-env-prefix must not be empty');
    const secretsDir = path.resolve(stringOption(values, 'secrets-dir') ?? DEFAULT_SECRETS_DIR);
    const caDirs = listOption(values, 'ca-dir').map((d) => path.resolve(d));
    const sinkRoots = listOption(values, 'sink-root').map((d) => path.resolve(d));
    const stateDir = stateDirFrom(stringOption(values, 'state-dir'), io.env);
    const credentialsKeyFile = stringOption(values, 'credentials-key-file');
    const publicHosts = listOption(values, 'public-host').map((name) => {
      const host = name.toLowerCase().replace(/\.$/, '');
      if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(host))
        throw new UserError(`--public-host must be a host name (as clients write it in URLs), not "${name}"`);
      return host;
    });
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
    const store = storeSpecOf(
      stringOption(values, 'store') ?? io.env.MAILCTL_STORE,
      stringOption(values, 'store-schema'),
    );
    const replica = replicaOf(values, store);
    const tokenFile = stringOption(values, 'token-file');
    const token = tokenFile === undefined ? undefined : await readToken(tokenFile);
    if (store.kind === 'postgres' && token === undefined)
      throw new UserError(
        'a PostgreSQL store keeps only the hash of the API token: give the token with --token-file FILE (the ' +
          'same file for every daemon on the store)',
      );
    // Loaded on demand: the daemon pulls in imapflow, pino and chokidar, which one-shot commands do not need.
    const { startDaemon } = await import('../../runtime/daemon/start.js');
    let daemon;
    try {
      daemon = await startDaemon({
        dir: stringOption(values, 'dir') ?? DEFAULT_DIR,
        stateDir,
        store,
        ...(token !== undefined && { token }),
        listen,
        watch: values['no-watch'] !== true,
        saveFailedAsDisabled: values['save-failed-as-disabled'] === true,
        allowEmpty: values['allow-empty'] === true,
        allowMassDelete: values['allow-mass-delete'] === true,
        secretsDir,
        secretEnvPrefix,
        publicHosts,
        caDirs: caDirs.length ? caDirs : [secretsDir, ...SYSTEM_CA_DIRS],
        sinkRoots: sinkRoots.length ? sinkRoots : [stateDir, DEFAULT_SINK_ROOT],
        ...(credentialsKeyFile !== undefined && { credentialsKeyFile: path.resolve(credentialsKeyFile) }),
        logLevel,
        env: io.env,
        systemSmtp,
        ...(smtpCheckIntervalMs !== undefined && { smtpCheckIntervalMs }),
        ...(outboxMax !== undefined && { outboxMax }),
        ...(replica && { replica }),
      });
    } catch (err) {
      if (err instanceof LockHeldError) throw new UserError(err.message, EXIT.error, 'lock-held');
      if (err instanceof StoreError) throw new UserError(err.message, EXIT.error, err.code);
      if ((err as { code?: unknown }).code === 'credentials-key')
        throw new UserError((err as Error).message, EXIT.error, 'credentials-key');
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE')
        throw new UserError(`cannot listen on ${listen.host}:${listen.port}: the address is in use`);
      throw err;
    }
    output.err(`mailctl daemon listening on ${daemon.url}`);
    const lost = await new Promise<Error | null>((resolve) => {
      const stop = () => void daemon.stop().then(() => resolve(null));
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      process.on('SIGHUP', () => void daemon.reconcile({ trigger: 'sighup' }));
      // another daemon took the store over: this one stops at once (its writes are fenced off already)
      void daemon.lost.then((err) => daemon.stop().then(() => resolve(err)));
    });
    if (lost) throw new UserError(lost.message, EXIT.error, 'lock-lost');
    return EXIT.ok;
  },
};
