import * as assert from 'uvu/assert';
import { MailError, type FailureClass } from '../../src/adapters/connection.js';

/** What `p` rejects with; fails the test with `message` when it resolves. */
export async function rejectionOf(
  p: Promise<unknown>,
  message = 'expected a failure',
): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string };
  }
  assert.unreachable(message);
  throw new Error(message); // unreachable: assert.unreachable throws
}

/** Await `p`, assert it rejects with a MailError of class `cls` (and `code`), push it to `sink`, return it. */
export async function expectMailError(
  p: Promise<unknown>,
  cls: FailureClass,
  code?: string,
  sink?: MailError[],
): Promise<MailError> {
  const failure = await rejectionOf(p, `expected a ${cls} failure, got success`);
  assert.instance(failure, MailError);
  const e = failure as MailError;
  sink?.push(e);
  assert.is(e.failureClass, cls, `class of: ${e.message}`);
  if (code) assert.is(e.code, code, `code of: ${e.message}`);
  return e;
}

/**
 * Wrap a uvu before/after hook so its error is printed: uvu 0.5 swallows hook errors (the suite just shows
 * "(0 / N)", Passed: 0, exit code 0), which hides e.g. why a server did not start.
 */
export function loudHook<T>(fn: (ctx: T) => unknown): (ctx: T) => Promise<void> {
  return async (ctx: T) => {
    try {
      await fn(ctx);
    } catch (err) {
      console.error('[test hook failed]', err);
      throw err;
    }
  };
}
