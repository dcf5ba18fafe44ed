/**
 * Removes every known secret value from text on its way to a log sink. Values are registered when the daemon resolves
 * them (SecretResolver's `onResolved` hook) or obtains them (OAuth2 access tokens), so nothing has to remember to
 * mark a field as sensitive: whatever reaches the sink is scrubbed.
 *
 * Forms matched: the raw value, its JSON-escaped and URL-encoded forms, the base64 of the SASL AUTH PLAIN
 * (`\0user\0pass`) and XOAUTH2 (`user=…\x01auth=Bearer …\x01\x01`) blobs when the user is known, and the part of a
 * base64 encoding that depends only on the value, at each of the three byte alignments — so the secret is found
 * inside any base64 blob whatever precedes it.
 */
export const REDACTED = '[REDACTED]';

/** Shorter base64 fragments would match unrelated text; the raw value and the full SASL blobs still match. */
const MIN_BASE64_CORE = 8;

/** The base64 characters that depend only on `value` when it starts `offset` bytes into a 3-byte group. */
export function base64Cores(value: string): string[] {
  const bytes = Buffer.from(value, 'utf8');
  const cores: string[] = [];
  for (let offset = 0; offset < 3; offset++) {
    const encoded = Buffer.concat([Buffer.alloc(offset), bytes, Buffer.alloc(3)]).toString('base64');
    const first = Math.ceil((8 * offset) / 6);
    const last = Math.floor((8 * (offset + bytes.length) - 6) / 6);
    const core = encoded.slice(first, last + 1);
    if (core.length >= MIN_BASE64_CORE) cores.push(core);
  }
  return cores;
}

/** Every form of `value` (and, with `user`, of the SASL blobs built from it) that must not reach a log. */
export function secretForms(value: string, user?: string): string[] {
  const forms = new Set<string>([
    value,
    JSON.stringify(value).slice(1, -1),
    encodeURIComponent(value),
    new URLSearchParams({ v: value }).toString().slice(2),
  ]);
  for (const core of base64Cores(value)) forms.add(core);
  if (user !== undefined) {
    forms.add(Buffer.from(`\0${user}\0${value}`).toString('base64'));
    forms.add(Buffer.from(`user=${user}\x01auth=Bearer ${value}\x01\x01`).toString('base64'));
  }
  return [...forms].filter((f) => f.length > 0);
}

export class SecretScrubber {
  /** Longest first, so a longer form is replaced before a shorter one that it contains. */
  private readonly patterns: string[] = [];
  /** The same forms: every resolve registers its values again, and with thousands of servers copying or re-sorting
   * the list each time made megabytes of garbage per apply. */
  private readonly known = new Set<string>();

  /** Registers a secret value; `user` adds the base64 SASL forms of the login. Safe to call repeatedly. */
  add(value: string, user?: string): void {
    if (value.length === 0) return;
    for (const form of secretForms(value, user)) {
      if (this.known.has(form)) continue;
      this.known.add(form);
      this.patterns.splice(this.firstShorterThan(form.length), 0, form);
    }
  }

  /** Binary search: where a form of `length` goes to keep the list longest first. */
  private firstShorterThan(length: number): number {
    let low = 0;
    let high = this.patterns.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.patterns[mid]!.length >= length) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  get size(): number {
    return this.patterns.length;
  }

  scrub(text: string): string {
    let out = text;
    for (const pattern of this.patterns) if (out.includes(pattern)) out = out.split(pattern).join(REDACTED);
    return out;
  }
}
