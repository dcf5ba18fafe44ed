/**
 * The sent copy: APPEND (\Seen) to the storage folder of the IMAP server with the same user. The copies that are
 * ready together go in one MULTIAPPEND command (RFC 3502: one round trip and one commit on the server, all or none)
 * when the server offers it, else one APPEND each. When a message may already be there (recovered after a crash, or an
 * earlier APPEND whose answer was lost), the folder is searched by Message-ID first, so each message ends up there
 * exactly once.
 */
import type { Mailbox } from '../../adapters/imap.js';
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
    .filter(
      ([, s]) =>
        s.status === 'active' &&
        s.config.spec.type === 'imap' &&
        s.config.spec.enabled &&
        s.config.spec.auth.user.toLowerCase() === wanted,
    )
    .sort(([a], [b]) => (a < b ? -1 : 1))[0];
  return hit ? { id: hit[0], spec: hit[1].config.spec as ImapServerSpec } : null;
}

/** UIDs in `folder` whose Message-ID header is `messageId` (the folder is selected read-only). */
export async function findByMessageId(client: Mailbox, folder: string, messageId: string): Promise<number[]> {
  await client.select(folder, { readOnly: true });
  return client.search({ messageIds: [messageId] });
}

export interface CopyItem {
  source: Buffer;
  messageId: string;
  /** Search the folder by Message-ID first (the copy may be there already). */
  searchFirst: boolean;
}

export type CopyOutcome = 'appended' | 'already-there';

/**
 * Appends the copies of `items` to `folder` (\Seen): one MULTIAPPEND (RFC 3502: one command, one commit on the
 * server, all or none) when the server offers it and there are several, else one APPEND each. Throws when a copy could
 * not be stored: the caller then searches before the next try, since some may have got there.
 */
export async function appendSentCopies(client: Mailbox, folder: string, items: CopyItem[]): Promise<CopyOutcome[]> {
  const outcomes: CopyOutcome[] = items.map(() => 'appended');
  for (const [n, item] of items.entries()) {
    if (item.searchFirst && (await findByMessageId(client, folder, item.messageId)).length)
      outcomes[n] = 'already-there';
  }
  const todo = items.filter((_, n) => outcomes[n] === 'appended');
  await client.append(
    folder,
    todo.map((item) => ({ source: item.source, flags: ['\\Seen'] })),
  );
  return outcomes;
}
