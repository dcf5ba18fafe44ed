/**
 * Group commit: items handed over while a write is running (or in the same turn of the event loop) go out together in
 * the next write, so a burst of N requests costs one store write, not N. `add` resolves once its item's write did.
 */
export class GroupCommit<T> {
  private pending: { item: T; done: () => void; fail: (err: unknown) => void }[] = [];
  private writing: Promise<void> | null = null;

  constructor(
    private readonly write: (items: T[]) => Promise<void>,
    /** Most items in one write (a larger burst is written in several, one after the other). */
    private readonly maxItems = 500,
  ) {}

  add(...items: T[]): Promise<void> {
    if (!items.length) return Promise.resolve();
    return Promise.all(
      items.map(
        (item) =>
          new Promise<void>((done, fail) => {
            this.pending.push({ item, done, fail });
            this.writing ??= this.flush();
          }),
      ),
    ).then(() => undefined);
  }

  private async flush(): Promise<void> {
    // let the items of this turn of the event loop join the first write
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.pending.length) {
      const batch = this.pending.splice(0, this.maxItems);
      try {
        await this.write(batch.map((b) => b.item));
        batch.forEach((b) => b.done());
      } catch (err) {
        batch.forEach((b) => b.fail(err));
      }
    }
    this.writing = null;
  }

  /** Resolves once nothing is waiting to be written. */
  async drain(): Promise<void> {
    while (this.writing) await this.writing;
  }
}
