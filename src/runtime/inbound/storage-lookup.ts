/**
 * Which messages of an interrupted copy intent are in the storage folder already (crash recovery, see batch.ts).
 * A message with a Message-ID is recognised by it: one SEARCH for the whole intent. A message without one is
 * recognised by its size and content hash among the messages that arrived in the storage folder after the intent was
 * recorded (UID ≥ the folder's UIDNEXT then): a COPY keeps the exact bytes. Message-IDs are read from the Message-ID
 * header alone (fetchMessageIds, also how an oversize message's is found without downloading it).
 */
import type { Mailbox } from '../../adapters/imap.js';
import type { Fingerprint } from '../../store/ports.js';
import { contentHash, messageIdOf } from './facts.js';
import { parseHeaders } from './route.js';

/** The Message-IDs of `uids` in the selected folder (their Message-ID header alone is fetched), by UID. */
export async function fetchMessageIds(client: Mailbox, uids: readonly number[]): Promise<Map<number, string | null>> {
  const ids = new Map<number, string | null>();
  for (const [uid, headers] of await client.fetchHeaderFields(uids, ['message-id']))
    ids.set(uid, messageIdOf(parseHeaders(headers)));
  return ids;
}

/**
 * Which of `ids` are in the selected folder: one SEARCH (an OR of HEADER Message-ID) and one FETCH of the hits'
 * Message-ID headers.
 */
export async function messageIdsIn(client: Mailbox, ids: string[]): Promise<Set<string>> {
  if (!ids.length) return new Set();
  const uids = await client.search({ messageIds: ids });
  if (!uids.length) return new Set();
  // HEADER matches substrings: only an exact Message-ID counts as the copy
  return new Set([...(await fetchMessageIds(client, uids)).values()].filter((id): id is string => id !== null));
}

/**
 * The keys of `wanted` whose copy is among the selected folder's messages with UID ≥ `sinceUid`. Each stored message
 * accounts for one wanted message at most (two identical messages need two copies). Sources are downloaded only for
 * stored messages whose size matches one that is wanted.
 */
export async function fingerprintsIn(
  client: Mailbox,
  wanted: Record<string, Fingerprint>,
  sinceUid: number,
): Promise<Set<string>> {
  const keys = Object.keys(wanted);
  if (!keys.length) return new Set();
  const sizes = new Set(keys.map((k) => wanted[k]!.size));
  // `N:*` also returns the highest UID when it is below N
  const arrived = (await client.fetchSizes({ from: sinceUid })).filter((m) => m.uid >= sinceUid && sizes.has(m.size));
  const needHash = keys.some((k) => wanted[k]!.sha256 !== null);
  const hashes = new Map<number, string>();
  if (needHash && arrived.length) {
    for (const [uid, source] of await client.fetchSources(arrived.map((m) => m.uid)))
      hashes.set(uid, contentHash(source));
  }
  const found = new Set<string>();
  const unused = [...arrived];
  for (const key of keys) {
    const { size, sha256 } = wanted[key]!;
    const at = unused.findIndex((m) => m.size === size && (sha256 === null || hashes.get(m.uid) === sha256));
    if (at < 0) continue;
    unused.splice(at, 1);
    found.add(key);
  }
  return found;
}
