import { MailError } from '../adapters/connection.js';
import type { Verification } from '../api/apply.js';
import { classifyMailError } from '../adapters/classify.js';
import { verifyImap, type VerifyImapResult } from '../adapters/imap.js';
import { verifySmtp } from '../adapters/smtp.js';
import type { ServerSpec } from '../config/model.js';
import { resolveConnection } from './connection.js';
import type { SecretResolver } from './secrets.js';

/** A verification as the daemon keeps it: the wire form plus the digest of the secrets it used (never sent). */
export interface CheckedServer extends Verification {
  /** Digest of the secrets the check used (in memory only). */
  secretDigest?: string;
}

/** The wire form: what the API and the CLI see. */
export const publicVerification = ({ secretDigest: _digest, ...wire }: CheckedServer): Verification => wire;

/** Parallel checks at most this many at a time: enough to be quick, few enough not to look like an attack. */
export const VERIFY_CONCURRENCY = 8;

/**
 * Checks a server against its real mail server as its loop would connect: TLS policy, CA, SNI, authentication, and
 * for IMAP that the inbox and the storage folder exist. Never throws.
 */
export async function verifyServer(id: string, spec: ServerSpec, resolver: SecretResolver): Promise<CheckedServer> {
  try {
    const { settings, secretDigest } = await resolveConnection(spec, resolver);
    if (spec.type === 'imap')
      return imapVerified(
        id,
        await verifyImap(settings, { folder: spec.folder, storageFolder: spec.storageFolder }),
        secretDigest,
      );
    await verifySmtp(settings);
    return { id, ok: true, secretDigest, line: `${id}: Connection succeeded` };
  } catch (err) {
    return verificationFailed(id, err);
  }
}

/**
 * The verification of an IMAP server whose folders were checked (by verifyImap, or by a loop opening its connection).
 */
export function imapVerified(id: string, found: VerifyImapResult, secretDigest: string): CheckedServer {
  const caps = found.capabilities.filter((c) =>
    ['IDLE', 'UIDPLUS', 'MOVE', 'CONDSTORE', 'COMPRESS=DEFLATE'].includes(c),
  );
  return {
    id,
    ok: true,
    secretDigest,
    line: `${id}: Connection succeeded (${[caps.join(' '), `${found.unseen} unseen`].filter(Boolean).join(', ')})`,
  };
}

export function verificationFailed(id: string, err: unknown): CheckedServer {
  const error = err instanceof MailError ? err : classifyMailError(err);
  return {
    id,
    ok: false,
    failureClass: error.failureClass,
    reason: error.message,
    line: `${id}: Connection failed: ${error.failureClass}: ${error.message}`,
  };
}

/**
 * Runs `verify` (default `verifyServer`) over many servers, bounded, keeping the input order in the result;
 * `onVerified` hears of each as it finishes (progress).
 */
export async function verifyAll<T extends { id: string; spec: ServerSpec }>(
  items: readonly T[],
  resolver: SecretResolver,
  options: { verify?: (item: T) => Promise<CheckedServer>; onVerified?: (result: CheckedServer) => void } = {},
): Promise<CheckedServer[]> {
  const verify = options.verify ?? ((item: T) => verifyServer(item.id, item.spec, resolver));
  const results = new Array<CheckedServer>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await verify(items[index]!);
      options.onVerified?.(results[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(VERIFY_CONCURRENCY, items.length) }, worker));
  return results;
}
