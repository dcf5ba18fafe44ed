/** imapflow's logger on top of ours: imapflow's entries go to a pino child logger, one level quieter. */
import type { Logger } from 'pino';
import type { ImapLogger } from './imap.js';

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
