/**
 * Text the daemon did not write (a server's reply, an error message, the trigger of an apply request) is kept at most
 * 1 KiB wherever it is stored or shown: a server answering with megabytes must not grow the state with it.
 */
export const MAX_STORED_TEXT_BYTES = 1024;

/** `text` cut to at most `max` bytes of UTF-8 (ending in `…` when cut). */
export function capText(text: string, max = MAX_STORED_TEXT_BYTES): string {
  if (text.length * 3 <= max) return text; // a UTF-16 unit is at most 3 bytes of UTF-8
  const bytes = Buffer.from(text);
  if (bytes.length <= max) return text;
  // a character cut in two decodes to U+FFFD: dropped
  return `${bytes
    .subarray(0, max - 3)
    .toString('utf8')
    .replace(/\uFFFD$/, '')}…`;
}
