/**
 * Stored mail: the Message-ID recorded for an inbound key (the directory sink's `.json`) or an outbound id (the
 * outbox), and the message itself from the storage folder of the IMAP server that owns the short name now.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ImapServerSpec } from '../../config/model.js';
import type { ObservedState } from '../../plan/model.js';
import { InboundMailProcessor } from '../inbound/processor.js';
import type { ImapPool } from './imap-pool.js';
import { findByMessageId } from './sent-copy.js';

/** Every sink folder the applied flows deliver to. */
function sinkDirs(stateDir: string, state: ObservedState): string[] {
  const paths = new InboundMailProcessor({ stateDir });
  const dirs = new Set<string>();
  for (const s of Object.values(state.servers)) {
    if (s.config.flow?.deliver.directory) dirs.add(paths.sinkDir(s.config.flow));
  }
  return [...dirs];
}

/** The Message-ID the directory sink recorded for an inbound key (the key must be validated by the caller). */
export async function inboundMessageId(stateDir: string, state: ObservedState, key: string): Promise<string | null> {
  for (const dir of sinkDirs(stateDir, state)) {
    const queues = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const q of queues) {
      if (!q.isDirectory()) continue;
      const text = await readFile(path.join(dir, q.name, `${key}.json`), 'utf8').catch(() => null);
      if (text !== null) return (JSON.parse(text) as { messageId?: string | null }).messageId ?? null;
    }
  }
  return null;
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
    const message = await client.fetchOne(String(uid), { uid: true, source: true }, { uid: true });
    if (!message || !message.source) return null;
    return { server: id, folder, uid, messageId, source: message.source.toString('base64') };
  });
}
