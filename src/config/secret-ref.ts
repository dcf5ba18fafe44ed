/** A secret reference as written in a file: `${env:NAME}` or `${file:/absolute/path}`. Only the daemon resolves it. */
export type SecretRef = { scheme: 'env'; name: string; text: string } | { scheme: 'file'; path: string; text: string };

const REFERENCE = /^\$\{(env|file):([^}]*)\}$/;

export function parseSecretRef(text: string): SecretRef | null {
  const match = REFERENCE.exec(text);
  if (!match) return null;
  const [, scheme, rest = ''] = match;
  if (scheme === 'env') return /^[A-Za-z_][A-Za-z0-9_]*$/.test(rest) ? { scheme, name: rest, text } : null;
  return rest.startsWith('/') ? { scheme: 'file', path: rest, text } : null;
}

/** True when a string is clearly meant as a reference but malformed, as opposed to a literal secret. */
export const looksLikeReference = (text: string): boolean => text.startsWith('${');

/**
 * Why a reference is not in normal form, or null. A `${file:}` path in normal form has no `.` or `..` segment, no `//`
 * and no trailing `/`, so a file has one spelling only: credential bindings are kept by the reference's text, and
 * another spelling of a bound file would otherwise look like a new secret.
 */
export function notNormalBecause(ref: SecretRef): string | null {
  if (ref.scheme !== 'file') return null;
  const segments = ref.path.split('/').slice(1);
  if (segments.some((s) => s === '.' || s === '..')) return 'it has a "." or ".." segment';
  if (segments.at(-1) === '') return 'it ends with "/"';
  if (segments.includes('')) return 'it has "//"';
  return null;
}
