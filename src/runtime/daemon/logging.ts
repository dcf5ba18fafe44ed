/**
 * The daemon's logger: pino, JSON lines on stdout (one readable line per entry when stdout is a terminal), secrets
 * removed at the sink by a SecretScrubber, plus pino `redact` for credential-shaped fields. Loops log through
 * `log.child({ server, loop })` (the supervisor does this); imapflow logs through `imapLogger`, one level quieter.
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import type { ImapLogger } from '../../adapters/imap.js';
import { REDACTED, SecretScrubber } from './scrubber.js';

const SECRET_FIELDS = ['password', 'pass', 'accessToken', 'refreshToken', 'clientSecret'];
export const REDACT_PATHS = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`]);

export interface LoggingOptions {
  level: string;
  /** Default: stdout (fd 1, synchronous, so nothing is lost on exit). */
  out?: { write(text: string): unknown };
  /** Default: whether stdout is a terminal. */
  pretty?: boolean;
  scrubber?: SecretScrubber;
}

export interface Logging {
  log: Logger;
  /** Register secret values here (SecretResolver's `onResolved`); every later log line is scrubbed of them. */
  scrubber: SecretScrubber;
}

const LEVEL_NAMES: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};

/** One JSON log line as `12:00:00.123 INFO  imap/support poll  loop running  state="running"`. */
export function prettyLine(line: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const { time, level, msg, server, loop, pid: _pid, hostname: _hostname, ...rest } = entry;
  const at = typeof time === 'number' ? new Date(time).toISOString().slice(11, 23) : '';
  const where = [server, loop].filter((x) => typeof x === 'string').join(' ');
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(' ');
  return `${[at, (LEVEL_NAMES[level as number] ?? JSON.stringify(level)).padEnd(5), where, typeof msg === 'string' ? msg : '', fields].filter((p) => p !== '').join('  ')}\n`;
}

/** A pino destination that scrubs every line (before and after formatting) and then writes it. */
export function scrubbingDestination(
  scrubber: SecretScrubber,
  out: { write(text: string): unknown },
  pretty: boolean,
): DestinationStream {
  return {
    write(line: string) {
      const clean = scrubber.scrub(line);
      out.write(pretty ? scrubber.scrub(prettyLine(clean)) : clean);
    },
  };
}

export function createLogging(options: LoggingOptions): Logging {
  const scrubber = options.scrubber ?? new SecretScrubber();
  const out = options.out ?? pino.destination({ dest: 1, sync: true });
  const pretty = options.pretty ?? process.stdout.isTTY === true;
  const log = pino(
    { level: options.level, redact: { paths: REDACT_PATHS, censor: REDACTED } },
    scrubbingDestination(scrubber, out, pretty),
  );
  return { log, scrubber };
}

/** imapflow logs every command at info: its info becomes our debug, its debug and trace our trace. */
const IMAPFLOW_LEVEL = {
  trace: 'trace',
  debug: 'trace',
  info: 'debug',
  warn: 'warn',
  error: 'error',
  fatal: 'error',
} as const;
type ImapflowLevel = keyof typeof IMAPFLOW_LEVEL;

/**
 * imapflow's logger (methods on a prototype: one small object per connection). `isLevelEnabled` matters for speed:
 * without it imapflow serializes every FETCH response (message sources included) into a log line that our level then
 * drops (~0.2 s of CPU per 5,000 messages, profiled).
 */
class ImapflowLog implements ImapLogger {
  constructor(private readonly log: Logger) {}
  private at(level: ImapflowLevel, obj: unknown): void {
    this.log[IMAPFLOW_LEVEL[level]](obj);
  }
  trace(obj: unknown): void {
    this.at('trace', obj);
  }
  debug(obj: unknown): void {
    this.at('debug', obj);
  }
  info(obj: unknown): void {
    this.at('info', obj);
  }
  warn(obj: unknown): void {
    this.at('warn', obj);
  }
  error(obj: unknown): void {
    this.at('error', obj);
  }
  fatal(obj: unknown): void {
    this.at('fatal', obj);
  }
  isLevelEnabled(level: string): boolean {
    return this.log.isLevelEnabled(IMAPFLOW_LEVEL[level as ImapflowLevel] ?? 'info');
  }
}

export function imapLogger(log: Logger): ImapLogger & { isLevelEnabled(level: string): boolean } {
  return new ImapflowLog(log.child({ component: 'imapflow' }));
}
