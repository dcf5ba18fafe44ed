/**
 * The ports for everything the daemon keeps. The daemon talks to these interfaces only; `file/` keeps the state in the
 * state folder (the embedded default), `postgres/` in a database that several daemons can share.
 *
 * The promises every implementation keeps (checked by test/store/contract.ts):
 *  - a call that resolves is durable: it survives a crash (SIGKILL) of the process the next instant;
 *  - each write that must happen together is one call and happens all or not at all — a batch's checkpoint, copy
 *    intent, delivered-ledger entries and queue rows (`InboundStore.commit`); a set of outbox messages accepted
 *    together (`OutboxStore.accept`); a set of outbox state changes (`OutboxStore.record`);
 *  - nothing stored holds a secret: references (`${file:…}`), digests and HMACs only;
 *  - a call that fails because the store cannot be reached throws StoreUnavailableError and wrote nothing it reports
 *    as done (a commit whose answer was lost may have happened: callers recover from the stored state, never from it).
 */
import type { OutboundRequest } from '../api/outbound.js';
import type { QuarantineListing, QuarantineReason } from '../api/quarantine.js';
import type { CredentialBinding, ObservedState } from '../plan/model.js';
import type { LeaseLostError } from './errors.js';
import type { GroupStore } from './group-ports.js';

/**
 * The credential bindings kept by the secret's identity (HMAC-SHA256 of its value under the daemon's credentials key),
 * next to `state.bindings` (kept by reference). The daemon's alone: never in `GET /v1/state`, which pull requests read.
 */
export interface IdentityBindings {
  /** The credentials key the identities were made with (`CredentialsKey.id`): under another key they mean nothing. */
  keyId: string;
  /** Per identity, every target it is bound to. */
  bindings: Record<string, CredentialBinding[]>;
}

/** The running configuration a daemon resumes after a restart. Holds references, never secrets. */
export interface AppliedRecord {
  appliedAt: string;
  revision: string | null;
  desiredDigest: string;
  state: ObservedState;
  /**
   * Absent only in a record written before bindings were kept by identity (`applied.json` formatVersion 1): the daemon
   * then makes them from `state.bindings` on start and writes the record back.
   */
  identities?: IdentityBindings;
  /** How many times the record was written (a store shared by a group counts them; the replicas run what it names). */
  generation?: number;
}

export interface ApplyLogEntry {
  time: string;
  trigger: string;
  revision: string | null;
  planDigest: string;
  result: string;
  servers: Record<string, string>;
}

/** Applied configuration (with its credential bindings) and the append-only apply log. */
export interface AppliedStore {
  read(): Promise<AppliedRecord | null>;
  /** Replaces the applied record as a whole. */
  write(record: AppliedRecord): Promise<void>;
  appendLog(entry: ApplyLogEntry): Promise<void>;
  /** The last `limit` entries of the apply log, oldest first. */
  recentLog(limit: number): Promise<ApplyLogEntry[]>;
}

/** One mailbox the inbound stage works: a server, and the identity (host, user, folder) its checkpoint belongs to. */
export interface MailboxRef {
  /** `imap/<shortName>` */
  server: string;
  type: string;
  shortName: string;
  /** sha256(host \0 user \0 folder): a checkpoint of another identity is not this mailbox's. */
  identity: string;
  folder: string;
}

export interface PendingEntry {
  attempts: number;
  /** epoch ms before which the message is not retried */
  nextAttemptAt: number;
  lastError?: string;
  /** Already in the storage folder (it was quarantined, then released): never copied again. */
  copied?: boolean;
}

/** How a message without a Message-ID is recognised; `sha256` is null when its body was never downloaded (oversize). */
export interface Fingerprint {
  size: number;
  sha256: string | null;
}

export interface QuarantineEntry {
  /** The message key (as in the sinks): what `mailctl quarantine release KEY` takes. */
  key?: string;
  reason: QuarantineReason;
  detail: string;
  at: string;
  messageId: string | null;
  attempts?: number;
}

/**
 * UIDs about to be COPYed to the storage folder, with their Message-IDs (for crash recovery); then `seen` (default:
 * `uids`) get +FLAGS \Seen and `flag` (quarantined) +FLAGS \Seen \Flagged.
 */
export interface CopyIntent {
  storageFolder: string;
  uids: number[];
  messageIds: Record<string, string | null>;
  advanceTo: number;
  seen?: number[];
  flag?: number[];
  /** Messages to copy that have no Message-ID, by UID, and the storage folder's UIDNEXT before the COPY. */
  withoutMessageId?: Record<string, Fingerprint>;
  storageUidNext?: number;
}

export const CHECKPOINT_FORMAT_VERSION = 1;

/**
 * Where the inbound stage of one mailbox stands. `lastUid` is a high-water mark: every UID at or below it is done,
 * except those in `pending` (retries and the backfill set). `copyIntent` is stored before COPY so a crash between COPY
 * and the next commit never copies twice.
 */
export interface Checkpoint {
  formatVersion: typeof CHECKPOINT_FORMAT_VERSION;
  server: string;
  identity: string;
  folder: string;
  uidValidity: string;
  lastUid: number;
  pending: Record<string, PendingEntry>;
  copyIntent: CopyIntent | null;
  /** Quarantined messages of this UIDVALIDITY (copied, \Seen \Flagged), by UID, until released. */
  quarantined: Record<string, QuarantineEntry>;
  /**
   * Set after a UIDVALIDITY change: UIDs below it existed when the mailbox was recreated and are compared with the
   * delivered ledger (Message-ID + content hash) instead of being delivered again.
   */
  recheckBelow?: number;
  updatedAt: string;
}

/** How many delivered messages per mailbox the ledger remembers at least (it may hold up to twice as many). */
export const LEDGER_MAX_ENTRIES = 20_000;

/** A delivered message as the ledger remembers it (what recognises it after the mailbox was recreated). */
export interface LedgerEntry {
  messageId: string | null;
  /** sha256 of the exact source */
  hash: string;
}

/** What is known of a delivered message besides its source (the directory sink's `.json`, a queue row's columns). */
export interface InboundMetadata {
  server: string;
  folder: string;
  uidValidity: string;
  uid: number;
  messageId: string | null;
  from: string[];
  to: string[];
  cc: string[];
  subject: string;
  date: string | null;
  queue: string;
  receivedAt: string;
  autoReply: boolean;
}

/**
 * A message for a queue that lives in the store itself (the PostgreSQL sink): written in the same transaction as the
 * checkpoint, so it is delivered exactly once without a file or an fsync of its own.
 */
export interface QueueRow extends InboundMetadata {
  table: string;
  key: string;
  source: Uint8Array;
}

/** What one commit of a batch writes, all or nothing. */
export interface BatchCommit {
  checkpoint: Checkpoint;
  /** Appended to the mailbox's delivered ledger. */
  delivered?: readonly LedgerEntry[];
  /** Inserted into their queue tables (stores that hold queues only). */
  rows?: readonly QueueRow[];
}

/** Per-mailbox inbound state: checkpoint with copy intent and quarantine, the delivered ledger, and queue rows. */
export interface InboundStore {
  /**
   * Makes the queue table `table` ready for rows (at apply, before a flow delivering into it runs). A store that keeps
   * no queue rows refuses.
   */
  prepareQueue(table: string): Promise<void>;
  /** The mailbox's checkpoint; null when there is none or it belongs to another identity or folder. */
  load(mailbox: MailboxRef): Promise<Checkpoint | null>;
  /** Writes the checkpoint (as a whole) together with the batch's ledger entries and queue rows. */
  commit(mailbox: MailboxRef, batch: BatchCommit): Promise<void>;
  /** Was a message with this Message-ID and content delivered for this mailbox (within the ledger's bound)? */
  wasDelivered(mailbox: MailboxRef, entry: LedgerEntry): Promise<boolean>;
  /** The Message-ID recorded for an inbound key (a queue row's), or null when the store does not know the key. */
  messageIdOf(key: string): Promise<string | null>;
  /** Every quarantined message (optionally of one server, e.g. `imap/support`). */
  listQuarantine(server?: string): Promise<QuarantineListing[]>;
  /**
   * Takes a quarantined message out of quarantine and puts its UID into the retry set (marked as already copied).
   * Returns the server, or null when no mailbox has the key quarantined. The caller excludes polls of that mailbox
   * while it runs.
   */
  release(key: string): Promise<string | null>;
}

/** An outbound message as the outbox keeps it (see api/outbound.ts for the request it comes from). */
export interface StoredOutboundMessage extends OutboundRequest {
  id: string;
  /** Assigned before the first try and never changed: a resend after a crash carries the same one. */
  messageId: string;
  /** Supervisor id of the SMTP loop that sends it. */
  server: string;
  from: string;
  /** Message-ID of the message replied to, when the inbound key was found. */
  inReplyToMessageId?: string;
  createdAt: string;
}

/** What happened to an outbound message. `deferred` and `sent` record progress; the others finish it. */
export interface OutboxEvent {
  id: string;
  event: 'deferred' | 'sent' | 'done' | 'failed' | 'cancelled';
  at: string;
  messageId: string;
  server: string;
  reply?: string;
  reason?: string;
  /** deferred: the attempts so far and when the next one is due (ISO time). */
  attempts?: number;
  nextAttemptAt?: string;
  /** Where the sent copy went (`imap/<shortName>` and folder), or null when no IMAP server has the same user. */
  storedIn?: { server: string; folder: string } | null;
}

export type FinalEvent = 'done' | 'failed' | 'cancelled';

/**
 * How many finished messages a store keeps for `outbox` views (the newest; none older than a week): the outbox keeps
 * no more in memory either, so neither grows with the mail sent.
 */
export const OUTBOX_FINISHED_KEPT = 1_000;

/** What the outbox holds after a restart. */
export interface OutboxSnapshot {
  /** Messages not finished, oldest first, each with its last progress event (if any). */
  open: { message: StoredOutboundMessage; last: OutboxEvent | null }[];
  /** Recently finished messages, oldest first: the newest OUTBOX_FINISHED_KEPT of the last week (`outbox` views). */
  finished: OutboxEvent[];
  /** Stored messages that could not be read back: set aside, never sent (what and why, for the log). */
  damaged: { item: string; reason: string }[];
}

export interface OutboxStore {
  /** Reads what is stored; sets aside what is damaged and forgets what finished long ago (see `finished`). */
  load(now: number): Promise<OutboxSnapshot>;
  /** Makes the messages durable, all in one write (one commit for the requests that arrived together). */
  accept(messages: readonly StoredOutboundMessage[]): Promise<void>;
  /**
   * Records events durably in one write; a final event means the message will never be loaded as open again. What
   * the store keeps does not grow with the messages that finished: beyond the newest OUTBOX_FINISHED_KEPT, finished
   * messages are forgotten while it runs, not only at the next load.
   */
  record(events: readonly OutboxEvent[]): Promise<void>;
  /**
   * A store shared by a group: the open messages of `server` accepted after `afterSeq` (by any replica), claimed by
   * this replica as the holder of that server's lease (fenced by it), oldest first, with the position to ask from next.
   */
  claim?(server: string, afterSeq: number): Promise<{ open: OutboxSnapshot['open']; lastSeq: number }>;
  close(): Promise<void>;
}

/** A credential the daemon keeps (an OAuth2 refresh token it was given by a sign-in or a rotation), encrypted. */
export interface KeptCredential {
  id: string;
  /** AES-256-GCM under the credentials key; the credential id is the associated data. */
  ciphertext: string;
  nonce: string;
  tag: string;
  /** Where it came from: `sign-in` or `rotation`. */
  source: string;
  /** What the credential was bound to when it was kept (token URL, provider, tenant, client id). */
  boundTo: Record<string, string>;
  updatedAt: string;
}

export interface CredentialStore {
  get(id: string): Promise<KeptCredential | null>;
  put(credential: KeptCredential): Promise<void>;
  remove(id: string): Promise<void>;
  /** Runs `fn` while holding the credential exclusively (one refresh of a rotating token at a time, across daemons). */
  exclusive<T>(id: string, fn: () => Promise<T>): Promise<T>;
}

/** The API token: what a daemon on this store accepts. */
export interface TokenStore {
  /**
   * The token this daemon serves with: `given` (from `--token-file`) when set, else the store's own (created once).
   * A store that several daemons can share keeps only the token's hash (set by the daemon that holds the store) and
   * needs `given`: without it, it refuses.
   */
  establish(given: string | undefined): Promise<string>;
}

/** Whether the store answers now. A state folder always does; a database can be away for a while. */
export interface StoreHealth {
  /** null while the store answers; otherwise why not and since when (for `/readyz` and `status`). */
  problem(): { reason: string; since: string } | null;
  /** Resolves once the store answers again (at once when it does now), or when `signal` aborts. */
  whenAvailable(signal?: AbortSignal): Promise<void>;
}

/** This daemon's hold on its store. */
export interface StoreLock {
  release(): Promise<void>;
  /** `listener` runs once if another daemon takes the store over (LeaseLostError): this one must stop at once. */
  onLost(listener: (err: LeaseLostError) => void): void;
}

/** The daemon's state. */
export interface Store {
  readonly kind: 'file' | 'postgres';
  /**
   * Where the state is, for messages (a folder, or `postgres://user@host:port/db (schema s)`), never with a password.
   */
  readonly location: string;
  readonly applied: AppliedStore;
  readonly inbound: InboundStore;
  readonly outbox: OutboxStore;
  readonly credentials: CredentialStore;
  readonly token: TokenStore;
  readonly health: StoreHealth;
  /**
   * Where the daemon keeps its credentials key when `--credentials-key-file` is not given (created on first start,
   * 0600), or null when the store has no such place (a store shared by several daemons: each is given the same file).
   */
  readonly ownCredentialsKeyFile: string | null;
  /** Makes this process the store's only daemon until `release`; throws LockHeldError naming the holder. */
  lock(): Promise<StoreLock>;
  /**
   * The group of daemons sharing this store (a PostgreSQL store), which a daemon joins instead of `lock()`: then
   * every write about a mailbox is fenced by that mailbox's lease. null for a store one daemon owns alone (files).
   */
  readonly group: GroupStore | null;
  close(): Promise<void>;
}
