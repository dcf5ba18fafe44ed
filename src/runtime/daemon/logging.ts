/**
 * The daemon's logger: pino, JSON lines on stdout (one readable line per entry when stdout is a terminal), secrets
 * removed at the sink by a SecretScrubber, plus pino `redact` for credential-shaped fields. Loops log through
 * `log.child({ server, loop })` (the supervisor does this); imapflow logs through adapters/imap-log.ts.
 */
import { pino, type DestinationStream, type Logger } from 'pino';
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
  const levelName = (LEVEL_NAMES[level as number] ?? JSON.stringify(level)).padEnd(5);
  const parts = [at, levelName, where, typeof msg === 'string' ? msg : '', fields];
  return `${parts.filter((p) => p !== '').join('  ')}\n`;
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
