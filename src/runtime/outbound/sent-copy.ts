/**
 * The sent copy: APPEND (\Seen) to the storage folder of the IMAP server with the same user. When the message may
 * already be there (recovered after a crash, or an earlier APPEND whose answer was lost), the folder is searched by
 * Message-ID first, so each message ends up there exactly once.
 */
import type { ImapFlow } from 'imapflow';
import { MailError } from '../../adapters/connection.js';
import type { ImapServerSpec } from '../../config/model.js';
import type { ObservedState } from '../../plan/model.js';

export interface CopyTarget {
  id: string;
  spec: ImapServerSpec;
}

/** The enabled IMAP server that logs in as `user` (case-insensitive), first by id; null when there is none. */
export function copyTargetFor(user: string, state: ObservedState): CopyTarget | null {
  const wanted = user.toLowerCase();
  const hit = Object.entries(state.servers)
    .filter(([, s]) => s.status === 'active' && s.config.spec.type === 'imap' && s.config.spec.enabled && s.config.spec.auth.user.toLowerCase() === wanted)
    .sort(([a], [b]) => (a < b ? -1 : 1))[0];
  return hit ? { id: hit[0], spec: hit[1].config.spec as ImapServerSpec } : null;
}

/** UIDs in `folder` whose Message-ID header is `messageId` (the folder is selected read-only). */
export async function findByMessageId(client: ImapFlow, folder: string, messageId: string): Promise<number[]> {
  try {
    await client.mailboxOpen(folder, { readOnly: true });
  } catch (err) {
    const e = err as { code?: string; mailboxMissing?: boolean };
    if (e.code === 'NotFound' || e.mailboxMissing) throw new MailError('folder-missing', `storage folder "${folder}" does not exist; create it first`, { code: 'NotFound' });
    throw err;
  }
  return (await client.search({ header: { 'message-id': messageId } }, { uid: true })) || [];
}

export async function appendSentCopy(client: ImapFlow, folder: string, source: Buffer, messageId: string, searchFirst: boolean): Promise<'appended' | 'already-there'> {
  if (searchFirst && (await findByMessageId(client, folder, messageId)).length) return 'already-there';
  const result = await client.append(folder, source, ['\\Seen']);
  if (result === false) throw new MailError('folder-missing', `storage folder "${folder}" refused the sent copy (does it exist?)`, { code: 'APPEND' });
  return 'appended';
}
