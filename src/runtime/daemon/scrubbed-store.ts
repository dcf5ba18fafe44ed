/**
 * The store as the daemon writes to it: every text it stores that may quote someone else (a server's reply in a
 * verification failure, a send error, a retry's error and a quarantine reason, an apply's trigger) passes the same
 * scrubber as the logs first, so a secret a server quoted back never lands in `applied.json`, the apply log, the outbox
 * or a checkpoint. Configuration (specs, references, bindings), keys and message content are stored as they are: they
 * hold no secret, and a password that happens to be part of a path or a name must not change what plans compare.
 */
import type { Checkpoint, Store } from '../../store/ports.js';
import type { SecretScrubber } from './scrubber.js';

const mapValues = <T>(record: Record<string, T>, fn: (value: T) => T): Record<string, T> =>
  Object.fromEntries(Object.entries(record).map(([key, value]) => [key, fn(value)]));

export function scrubbingStore(store: Store, scrubber: SecretScrubber): Store {
  const text = (value: string): string => scrubber.scrub(value);
  const checkpoint = (c: Checkpoint): Checkpoint => ({
    ...c,
    pending: mapValues(c.pending, (p) => (p.lastError === undefined ? p : { ...p, lastError: text(p.lastError) })),
    quarantined: mapValues(c.quarantined, (q) => ({ ...q, detail: text(q.detail) })),
  });
  const { applied, inbound, outbox } = store;
  return {
    kind: store.kind,
    location: store.location,
    credentials: store.credentials,
    token: store.token,
    ownCredentialsKeyFile: store.ownCredentialsKeyFile,
    health: store.health,
    lock: () => store.lock(),
    close: () => store.close(),
    applied: {
      read: () => applied.read(),
      recentLog: (limit) => applied.recentLog(limit),
      write: (record) =>
        applied.write({
          ...record,
          state: {
            ...record.state,
            servers: mapValues(record.state.servers, (s) =>
              s.disabledReason === undefined ? s : { ...s, disabledReason: text(s.disabledReason) },
            ),
          },
        }),
      appendLog: (entry) => applied.appendLog({ ...entry, trigger: text(entry.trigger) }),
    },
    inbound: {
      prepareQueue: (table) => inbound.prepareQueue(table),
      load: (mailbox) => inbound.load(mailbox),
      wasDelivered: (mailbox, entry) => inbound.wasDelivered(mailbox, entry),
      messageIdOf: (key) => inbound.messageIdOf(key),
      listQuarantine: (server) => inbound.listQuarantine(server),
      release: (key) => inbound.release(key),
      commit: (mailbox, batch) => inbound.commit(mailbox, { ...batch, checkpoint: checkpoint(batch.checkpoint) }),
    },
    outbox: {
      load: (now) => outbox.load(now),
      accept: (messages) => outbox.accept(messages),
      close: () => outbox.close(),
      record: (events) =>
        outbox.record(
          events.map((e) => ({
            ...e,
            ...(e.reply !== undefined && { reply: text(e.reply) }),
            ...(e.reason !== undefined && { reason: text(e.reason) }),
          })),
        ),
    },
  };
}
