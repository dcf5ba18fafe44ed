/**
 * The identities of secrets under the credentials key: credential bindings are kept by them as well as by reference,
 * so that the same secret behind another reference is still bound to where it was applied.
 */
import type { Logger } from 'pino';
import type { CredentialsKey } from '../../connect/credentials-key.js';
import { secretDigest, secretReferences, type SecretKind, type SecretResolver } from '../../connect/secrets.js';
import { completeLegacyBindings, identityBindingsOf } from '../../plan/bindings.js';
import type { DesiredState, ObservedState } from '../../plan/model.js';
import type { AppliedRecord } from '../../store/ports.js';

/** Adds the identity of each resolved value (a server's secrets) to `ofReference`, by reference. */
export function addIdentities(
  ofReference: Record<string, string>,
  values: ReadonlyMap<string, string> | null,
  key: CredentialsKey,
): Record<string, string> {
  for (const [reference, value] of values ?? []) ofReference[reference] = key.identityOf(value);
  return ofReference;
}

/** The folder's secrets as a plan takes them: each enabled server's secrets digest, and each reference's identity. */
export async function desiredSecrets(
  desired: DesiredState,
  resolver: SecretResolver,
  key: CredentialsKey,
): Promise<{ digests: Record<string, string>; ofReference: Record<string, string> }> {
  const digests: Record<string, string> = {};
  const ofReference: Record<string, string> = {};
  await Promise.all(
    Object.entries(desired.servers)
      .filter(([, s]) => s.spec.enabled)
      .map(async ([id, s]) => {
        const values = await resolver.resolveAll(s.spec).catch(() => null);
        if (!values) return; // verification says why
        digests[id] = secretDigest(values);
        addIdentities(ofReference, values, key);
      }),
  );
  return { digests, ofReference };
}

/**
 * The identity bindings made from a record's reference bindings: for a record written before they existed (also
 * completing each binding with the CA file and SNI name of the server that made it), or made under another key. A
 * reference that does not resolve now stays bound by the reference only.
 */
export async function remadeBindings(
  saved: AppliedRecord,
  resolver: SecretResolver,
  key: CredentialsKey,
  log: Logger,
): Promise<{ bindings: ObservedState['bindings']; byIdentity: ObservedState['bindings'] }> {
  const bindings = saved.identities === undefined ? completeLegacyBindings(saved.state) : saved.state.bindings;
  const ofReference: Record<string, string> = {};
  const kinds = new Map<string, SecretKind>();
  for (const server of Object.values(saved.state.servers))
    for (const [reference, kind] of secretReferences(server.config.spec)) kinds.set(reference, kind);
  // kept credentials (their ids) are bound by id only: no value to take an identity of
  for (const reference of Object.keys(bindings).filter((r) => !r.startsWith('oauth2/'))) {
    try {
      ofReference[reference] = key.identityOf(await resolver.resolve(reference, kinds.get(reference)));
    } catch (err) {
      log.warn({ reference }, `${(err as Error).message}: its binding is kept by the reference only`);
    }
  }
  return { bindings, byIdentity: identityBindingsOf(bindings, ofReference) };
}
