// Coalesces concurrent Transit calls of one kind into a single `batch_input`
// request. A proxy decrypting a result set asks for many distinct DEKs in the
// same event-loop turn; one HTTP round trip for all of them beats one each.
// Items queued in one turn go out together (at most `maxItems` per request).

type Waiter<I, O> = { item: I; resolve: (o: O) => void; reject: (e: unknown) => void };

/** Runs one request for `items`; per-item failures come back as Error entries, request failures reject. */
export type BatchRunner<I, O> = (items: I[]) => Promise<(O | Error)[]>;

export class Batcher<I, O> {
  private queue: Waiter<I, O>[] = [];
  private scheduled = false;

  constructor(
    private readonly run: BatchRunner<I, O>,
    private readonly maxItems: number,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (this.queue.length >= this.maxItems) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.flush();
        });
      }
    });
  }

  private flush(): void {
    while (this.queue.length) {
      const batch = this.queue.splice(0, this.maxItems);
      this.run(batch.map((w) => w.item)).then(
        (results) => {
          batch.forEach((w, i) => {
            const r = results[i];
            if (r === undefined) w.reject(new Error('Vault batch answer is missing an item'));
            else if (r instanceof Error) w.reject(r);
            else w.resolve(r);
          });
        },
        (err: unknown) => {
          for (const w of batch) w.reject(err);
        },
      );
    }
  }
}
