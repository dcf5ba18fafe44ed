/**
 * Stored mail: the Message-ID recorded for an inbound key (the directory sink's `.json`) or an outbound id (the
 * outbox), and the message itself from the storage folder of the IMAP server that owns the short name now.
 */
import type { ImapServerSpec } from '../../config/model.js';
import type { ObservedState } from '../../plan/model.js';
import type { InboundStore } from '../../store/ports.js';
import { messageIdInDirectories, sinkDirOf } from '../inbound/sinks/directory.js';
import type { ImapPool } from './imap-pool.js';
import { findByMessageId } from './sent-copy.js';

/**
 * The Message-ID recorded for an inbound key: the store knows the keys of queue rows it holds; the directory sinks'
 * `.json` files hold the rest. The key must be validated by the caller.
 */
export async function inboundMessageId(
  key: string,
  where: { inbound: InboundStore; stateDir: string; state: ObservedState },
): Promise<string | null> {
  const known = await where.inbound.messageIdOf(key);
  if (known) return known;
  const dirs = new Set<string>();
  for (const s of Object.values(where.state.servers)) {
    if (s.config.flow?.deliver.directory) dirs.add(sinkDirOf(where.stateDir, s.config.flow));
  }
  return messageIdInDirectories([...dirs], key);
}

export interface StoredMessage {
  server: string;
  folder: string;
  uid: number;
  messageId: string;
  /** base64 of the exact source */
  source: string;
}

/** The newest message with `messageId` in the storage folder of `imap/<shortName>`; null when it is not there. */
export async function fetchStored(
  pool: ImapPool,
  id: string,
  spec: ImapServerSpec,
  messageId: string,
): Promise<StoredMessage | null> {
  const folder = spec.storageFolder;
  return pool.with(id, spec, async (client) => {
    const uids = await findByMessageId(client, folder, messageId);
    const uid = uids.at(-1);
    if (uid === undefined) return null;
    const source = (await client.fetchSources([uid])).get(uid);
    if (!source) return null;
    return { server: id, folder, uid, messageId, source: source.toString('base64') };
  });
}
