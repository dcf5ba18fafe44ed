/**
 * One logged-in IMAP connection, as the rest of mailctl uses it: select, search, fetch, copy, add flags, append,
 * status. This is the only place that talks imapflow's API (and its internals, for MULTIAPPEND); callers see UIDs,
 * buffers and MailErrors.
 */
import type { FetchMessageObject, ImapFlow, SearchObject } from 'imapflow';
import { encodePath, normalizePath } from 'imapflow/lib/tools.js';
import { MailError } from './connection.js';

/**
 * A set of UIDs: a list, or every UID from `from` on (`N:*`, which also returns the highest UID when it is below N).
 */
export type UidSet = readonly number[] | { from: number };

export type SearchCriteria =
  | { uidFrom: number }
  | { unseen: true }
  | { all: true }
  /** Messages whose Message-ID header contains any of these (HEADER matches substrings). */
  | { messageIds: readonly string[] };

export interface SelectedFolder {
  path: string;
  uidValidity: string;
  uidNext: number;
}

export interface FolderStatus {
  messages?: number;
  unseen?: number;
  uidNext?: number;
}

/** A message's UID and RFC822.SIZE. */
export interface MessageSize {
  uid: number;
  size: number;
}

export interface AppendItem {
  source: Buffer;
  flags: string[];
}

/**
 * imapflow's command runner (not in its typings), used for MULTIAPPEND; the response must be released with `next()`.
 */
type Exec = (command: string, attributes: unknown[], options?: object) => Promise<{ next?: () => void }>;

const uidSet = (uids: UidSet): string => ('from' in uids ? `${uids.from}:*` : uids.join(','));

function searchObject(criteria: SearchCriteria): SearchObject {
  if ('uidFrom' in criteria) return { uid: `${criteria.uidFrom}:*` };
  if ('unseen' in criteria) return { seen: false };
  if ('all' in criteria) return { all: true };
  return { or: criteria.messageIds.map((id) => ({ header: { 'message-id': id } })) };
}

const missingFolder = (folder: string, host: string | undefined) =>
  new MailError(
    'folder-missing',
    `storage folder "${folder}" does not exist${host ? ` on ${host}` : ''}; create it first`,
    {
      code: 'NotFound',
    },
  );

export class Mailbox {
  constructor(private readonly client: ImapFlow) {}

  get usable(): boolean {
    return this.client.usable;
  }

  get host(): string | undefined {
    return this.client.options.host;
  }

  hasCapability(name: string): boolean {
    return this.client.capabilities.has(name);
  }

  /** Capabilities after login, as the server names them (IDLE, UIDPLUS, MOVE …). */
  capabilities(): string[] {
    return [...this.client.capabilities.keys()];
  }

  /** The selected folder, or null. */
  get selected(): SelectedFolder | null {
    const box = this.client.mailbox;
    return box ? { path: box.path, uidValidity: String(box.uidValidity), uidNext: box.uidNext } : null;
  }

  /** Selects `folder` (read-only: EXAMINE); a missing folder is a `folder-missing` MailError. */
  async select(folder: string, options: { readOnly?: boolean } = {}): Promise<SelectedFolder> {
    try {
      const box = await this.client.mailboxOpen(folder, options.readOnly ? { readOnly: true } : {});
      return { path: box.path, uidValidity: String(box.uidValidity), uidNext: box.uidNext };
    } catch (err) {
      const e = err as { code?: string; mailboxMissing?: boolean };
      if (e.code === 'NotFound' || e.mailboxMissing) throw missingFolder(folder, this.host);
      throw err;
    }
  }

  /** STATUS of `folder` (false when the server refused it). */
  async status(
    folder: string,
    items: { messages?: boolean; unseen?: boolean; uidNext?: boolean },
  ): Promise<FolderStatus | false> {
    const st = await this.client.status(folder, items);
    return st === false ? false : { messages: st.messages, unseen: st.unseen, uidNext: st.uidNext };
  }

  /** UIDs in the selected folder matching `criteria`. */
  async search(criteria: SearchCriteria): Promise<number[]> {
    return (await this.client.search(searchObject(criteria), { uid: true })) || [];
  }

  /** UID and RFC822.SIZE of each message of `uids` in the selected folder. */
  async fetchSizes(uids: UidSet): Promise<MessageSize[]> {
    const all = await this.client.fetchAll(uidSet(uids), { uid: true, size: true }, { uid: true });
    return all.map((m: FetchMessageObject) => ({ uid: m.uid, size: m.size ?? 0 }));
  }

  /** The exact sources (BODY.PEEK: \Seen untouched), by UID. */
  async fetchSources(uids: readonly number[]): Promise<Map<number, Buffer>> {
    const sources = new Map<number, Buffer>();
    if (!uids.length) return sources;
    for (const m of await this.client.fetchAll(uidSet(uids), { uid: true, source: true }, { uid: true }))
      if (m.source) sources.set(m.uid, m.source);
    return sources;
  }

  /** The raw header lines of the named fields (BODY.PEEK[HEADER.FIELDS]), by UID. */
  async fetchHeaderFields(uids: readonly number[], fields: string[]): Promise<Map<number, Buffer>> {
    const headers = new Map<number, Buffer>();
    if (!uids.length) return headers;
    for (const m of await this.client.fetchAll(uidSet(uids), { uid: true, headers: fields }, { uid: true }))
      if (m.headers) headers.set(m.uid, m.headers);
    return headers;
  }

  /**
   * UID COPY to `folder`; the UIDs the copies got when the server says (UIDPLUS COPYUID). A missing folder is a
   * `folder-missing` MailError.
   */
  async copy(uids: readonly number[], folder: string): Promise<Map<number, number>> {
    const result = await this.client.messageCopy(uidSet(uids), folder, { uid: true });
    if (result === false) throw missingFolder(folder, this.host);
    return result.uidMap ?? new Map();
  }

  /**
   * Removes exactly `uids` from the selected folder (selected read-write): STORE +FLAGS \Deleted, then UID EXPUNGE of
   * those UIDs (UIDPLUS). Without UIDPLUS nothing is removed (a plain EXPUNGE would take others' \Deleted messages).
   */
  async removeExactly(uids: readonly number[]): Promise<void> {
    if (!uids.length) return;
    if (!this.hasCapability('UIDPLUS'))
      throw new MailError('config', 'the server lacks UIDPLUS: a copy cannot be removed without touching others');
    if ((await this.client.messageDelete(uidSet(uids), { uid: true })) === false)
      throw new MailError('network', `UID EXPUNGE ${uidSet(uids)} failed`);
  }

  /** UID STORE +FLAGS.SILENT: adds, never replaces (other clients' flags stay). */
  async addFlags(uids: readonly number[], flags: string[]): Promise<void> {
    if (uids.length) await this.client.messageFlagsAdd(uidSet(uids), flags, { uid: true, silent: true });
  }

  /**
   * Appends `items` to `folder`: one MULTIAPPEND (RFC 3502: one command, one commit on the server, all or none) when
   * the server offers it and there are several, else one APPEND each. Throws when a message could not be stored.
   */
  async append(folder: string, items: readonly AppendItem[]): Promise<void> {
    const exec = (this.client as unknown as { exec?: Exec }).exec;
    // literal8 (a NUL byte) and APPENDLIMIT are left to imapflow's own append
    if (
      items.length > 1 &&
      this.hasCapability('MULTIAPPEND') &&
      !this.hasCapability('APPENDLIMIT') &&
      typeof exec === 'function' &&
      items.every((i) => i.source.indexOf(0) < 0)
    ) {
      const attributes: unknown[] = [
        { type: 'ATOM', value: encodePath(this.client, normalizePath(this.client, folder)) },
      ];
      for (const item of items)
        attributes.push(
          item.flags.map((value) => ({ type: 'ATOM', value })),
          { type: 'LITERAL', value: item.source },
        );
      let response: { next?: () => void };
      try {
        response = await exec.call(this.client, 'APPEND', attributes, {});
      } catch (err) {
        if ((err as { serverResponseCode?: string }).serverResponseCode === 'TRYCREATE')
          throw missingFolder(folder, this.host);
        throw err;
      }
      // imapflow reads nothing more from the server until the completed command's response is released
      response.next?.();
      return;
    }
    for (const item of items) {
      const result = await this.client.append(folder, item.source, item.flags);
      if (result === false)
        throw new MailError('folder-missing', `storage folder "${folder}" refused the message (does it exist?)`, {
          code: 'APPEND',
        });
    }
  }

  /** Calls `listener` when the selected folder reports new mail (EXISTS, e.g. during IDLE). */
  onNewMail(listener: () => void): void {
    this.client.on('exists', listener);
  }

  /** Settles when the connection ends. */
  closed(): Promise<void> {
    return new Promise<void>((resolve) => {
      if (!this.client.usable) resolve();
      else this.client.once('close', () => resolve());
    });
  }

  /** Logs out of a usable connection, else just closes it. */
  async disconnect(): Promise<void> {
    if (this.client.usable) await this.client.logout().catch(() => this.client.close());
    else this.client.close();
  }
}
