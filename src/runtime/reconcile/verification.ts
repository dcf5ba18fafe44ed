/**
 * An apply's verification against the real servers, with its progress. A real apply verifies an IMAP server by opening
 * the connection its loop will keep (one login per server): the loop takes it over, or the apply discards it.
 */
import type { ApplyProgress } from '../../api/index.js';
import type { SecretResolver } from '../../connect/secrets.js';
import { imapVerified, verificationFailed, verifyAll, verifyServer, type CheckedServer } from '../../connect/verify.js';
import type { ImapServerSpec, ServerSpec } from '../../config/model.js';
import type { ServerConfig } from '../../plan/model.js';
import { discardOpened, type OpenedImap } from '../loops/imap-loop.js';
import type { Supervisor } from '../loops/supervisor.js';

/** A server a change starts (its loop's configuration), or one verified only to reauthenticate it (no config). */
export interface VerifyItem {
  id: string;
  spec: ServerSpec;
  config?: ServerConfig;
}

export interface VerifyOptions {
  resolver: SecretResolver;
  /** Opens an IMAP server's connection for its loop; absent on a dry run, which keeps no connection. */
  openFor?: Supervisor['openFor'];
  /** Receives the connections opened: each until its loop takes it, else until `discardAll`. */
  opened: Map<string, OpenedImap>;
  onProgress?: (progress: ApplyProgress) => void;
}

/**
 * Verifies the servers the changes start, then those only reauthenticated; `onProgress` hears the count of the first
 * ones before any verification starts, then every result.
 */
export async function verifyForApply(
  starting: readonly (VerifyItem & { config: ServerConfig })[],
  reauthOnly: readonly VerifyItem[],
  options: VerifyOptions,
): Promise<CheckedServer[]> {
  const { resolver, openFor, opened, onProgress } = options;
  const started = Date.now();
  const progress: ApplyProgress = { type: 'progress', total: starting.length, verified: 0, failed: 0, elapsedMs: 0 };
  onProgress?.({ ...progress });
  progress.total += reauthOnly.length;
  const items: VerifyItem[] = [...starting, ...reauthOnly];
  return verifyAll(items, resolver, {
    ...(openFor && {
      verify: ({ id, spec, config }) =>
        config ? verifyByOpening({ id, spec, config }, openFor, resolver, opened) : verifyServer(id, spec, resolver),
    }),
    onVerified: (v) => {
      progress.verified += 1;
      if (!v.ok) progress.failed += 1;
      onProgress?.({ ...progress, elapsedMs: Date.now() - started });
    },
  });
}

async function verifyByOpening(
  item: VerifyItem & { config: ServerConfig },
  openFor: Supervisor['openFor'],
  resolver: SecretResolver,
  opened: Map<string, OpenedImap>,
): Promise<CheckedServer> {
  if (item.spec.type !== 'imap') return verifyServer(item.id, item.spec, resolver);
  try {
    const connection = await openFor(
      item.id,
      item.config as ServerConfig & { spec: ImapServerSpec },
      new AbortController().signal,
    );
    opened.set(item.id, connection);
    return imapVerified(item.id, connection.found, connection.secretDigest);
  } catch (err) {
    return verificationFailed(item.id, err);
  }
}

/** Closes the connections no loop took (an apply that was refused, or servers it did not start). */
export async function discardAll(opened: Map<string, OpenedImap>): Promise<void> {
  await Promise.all([...opened.values()].map(discardOpened));
}
