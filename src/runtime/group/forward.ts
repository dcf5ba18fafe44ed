/**
 * A request that another replica of the group must answer (`apply` goes to the one holding the reconciler lease, a
 * quarantine release to the owner of the mailbox), passed on with the caller's token (the same group-wide) and
 * answered as that replica answered, NDJSON progress lines included.
 */
import type { IncomingMessage } from 'node:http';
import { HttpError, type Answer } from '../daemon/http.js';

/** How long a forwarded request may take (an apply verifies servers). */
const FORWARD_TIMEOUT_MS = 10 * 60_000;

export async function forward(base: string, path: string, req: IncomingMessage, body: unknown): Promise<Answer> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: {
        authorization: req.headers.authorization ?? '',
        'content-type': 'application/json',
        accept: req.headers.accept ?? 'application/json',
        // the forwarded request names the replica by the address it is reached at
        host: new URL(base).host,
      },
      body: JSON.stringify(body ?? {}),
      signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS),
    });
  } catch (err) {
    throw new HttpError(
      503,
      `the replica at ${base} that must answer this cannot be reached: ${(err as Error).message}`,
      {},
      { 'retry-after': '5' },
    );
  }
  if (!res.headers.get('content-type')?.includes('ndjson') || !res.body) {
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* a text answer */
    }
    return { status: res.status, body: parsed };
  }
  const stream = res.body;
  return {
    status: res.status,
    body: null,
    stream: async (write) => {
      let rest = '';
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        rest += decoder.decode(chunk, { stream: true });
        const lines = rest.split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) if (line.trim()) write(JSON.parse(line));
      }
      if (rest.trim()) write(JSON.parse(rest));
    },
  };
}
