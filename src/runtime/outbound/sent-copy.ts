/**
 * The sent copy: APPEND (\Seen) to the storage folder of the IMAP server with the same user. The copies that are
 * ready together go in one MULTIAPPEND command (RFC 3502: one round trip and one commit on the server, all or none)
 * when the server offers it, else one APPEND each. When a message may already be there (recovered after a crash, or an
 * earlier APPEND whose answer was lost), the folder is searched by Message-ID first, so each message ends up there
 * exactly once.
 */
import type { ImapFlow } from 'imapflow';
import { encodePath, normalizePath } from 'imapflow/lib/tools.js';
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
export async function findByMessageId(client: ImapFlow, folder: string, messageId: string): Promise<number[]> {
  try {
    await client.mailboxOpen(folder, { readOnly: true });
  } catch (err) {
    const e = err as { code?: string; mailboxMissing?: boolean };
    if (e.code === 'NotFound' || e.mailboxMissing)
      throw new MailError('folder-missing', `storage folder "${folder}" does not exist; create it first`, {
        code: 'NotFound',
      });
    throw err;
  }
  return (await client.search({ header: { 'message-id': messageId } }, { uid: true })) || [];
}

export interface CopyItem {
  source: Buffer;
  messageId: string;
  /** Search the folder by Message-ID first (the copy may be there already). */
  searchFirst: boolean;
}

export type CopyOutcome = 'appended' | 'already-there';

/** imapflow's command runner (not in its typings), used for MULTIAPPEND; the response must be released with `next()`. */
type Exec = (command: string, attributes: unknown[], options?: object) => Promise<{ next?: () => void }>;

/**
 * Appends the copies of `items` to `folder` (\Seen): one MULTIAPPEND (RFC 3502: one command, one commit on the
 * server, all or none) when the server offers it and there are several, else one APPEND each. Throws when a copy could
 * not be stored: the caller then searches before the next try, since some may have got there.
 */
export async function appendSentCopies(client: ImapFlow, folder: string, items: CopyItem[]): Promise<CopyOutcome[]> {
  const outcomes: CopyOutcome[] = items.map(() => 'appended');
  for (const [n, item] of items.entries()) {
    if (item.searchFirst && (await findByMessageId(client, folder, item.messageId)).length)
      outcomes[n] = 'already-there';
  }
  const todo = items.filter((_, n) => outcomes[n] === 'appended');
  const exec = (client as unknown as { exec?: Exec }).exec;
  // literal8 (a NUL byte) and APPENDLIMIT are left to imapflow's own append
  if (
    todo.length > 1 &&
    client.capabilities.has('MULTIAPPEND') &&
    !client.capabilities.has('APPENDLIMIT') &&
    typeof exec === 'function' &&
    todo.every((i) => i.source.indexOf(0) < 0)
  ) {
    const attributes: unknown[] = [{ type: 'ATOM', value: encodePath(client, normalizePath(client, folder)) }];
    for (const item of todo)
      attributes.push([{ type: 'ATOM', value: '\\Seen' }], { type: 'LITERAL', value: item.source });
    let response: { next?: () => void };
    try {
      response = await exec.call(client, 'APPEND', attributes, {});
    } catch (err) {
      if ((err as { serverResponseCode?: string }).serverResponseCode === 'TRYCREATE')
        throw new MailError('folder-missing', `storage folder "${folder}" does not exist; create it first`, {
          code: 'NotFound',
        });
      throw err;
    }
    // imapflow reads nothing more from the server until the completed command's response is released
    response.next?.();
    return outcomes;
  }
  for (const item of todo) {
    const result = await client.append(folder, item.source, ['\\Seen']);
    if (result === false)
      throw new MailError('folder-missing', `storage folder "${folder}" refused the sent copy (does it exist?)`, {
        code: 'APPEND',
      });
  }
  return outcomes;
}
