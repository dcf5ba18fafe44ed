/**
 * The store as the daemon writes to it: every text it stores from outside (a server's reply in a verification
 * failure, a send error, a quarantine reason, an apply's trigger) passes the same scrubber as the logs first, so a
 * secret a server quoted back never lands in `applied.json`, the apply log, the outbox or a checkpoint. Message content
 * (outbox messages, queue rows, kept ciphertext) is stored as it is.
 */
import type { Store } from '../../store/ports.js';
import type { SecretScrubber } from './scrubber.js';

/** `value` with every string scrubbed (a JSON value: records, events, checkpoints). */
export function scrubValue<T>(value: T, scrubber: SecretScrubber): T {
  const text = JSON.stringify(value);
  const clean = scrubber.scrub(text);
  if (clean === text) return value;
  try {
    return JSON.parse(clean) as T;
  } catch {
    // a secret that also reads as JSON punctuation: scrub string by string instead
    return walk(value, (s) => scrubber.scrub(s));
  }
}

function walk<T>(value: T, scrub: (text: string) => string): T {
  if (typeof value === 'string') return scrub(value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => walk(v, scrub)) as T;
  if (value && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, scrub)])) as T;
  return value;
}

export function scrubbingStore(store: Store, scrubber: SecretScrubber): Store {
  const { applied, inbound, outbox } = store;
  return {
    kind: store.kind,
    location: store.location,
    credentials: store.credentials,
    token: store.token,
    ownCredentialsKeyFile: store.ownCredentialsKeyFile,
    lock: () => store.lock(),
    close: () => store.close(),
    applied: {
      read: () => applied.read(),
      recentLog: (limit) => applied.recentLog(limit),
      write: (record) => applied.write(scrubValue(record, scrubber)),
      appendLog: (entry) => applied.appendLog(scrubValue(entry, scrubber)),
    },
    inbound: {
      load: (mailbox) => inbound.load(mailbox),
      wasDelivered: (mailbox, entry) => inbound.wasDelivered(mailbox, entry),
      messageIdOf: (key) => inbound.messageIdOf(key),
      listQuarantine: (server) => inbound.listQuarantine(server),
      release: (key) => inbound.release(key),
      commit: (mailbox, batch) =>
        inbound.commit(mailbox, { ...batch, checkpoint: scrubValue(batch.checkpoint, scrubber) }),
    },
    outbox: {
      load: (now) => outbox.load(now),
      accept: (messages) => outbox.accept(messages),
      close: () => outbox.close(),
      record: (events) => outbox.record(scrubValue(events, scrubber)),
    },
  };
}
