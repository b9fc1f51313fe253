// What one push through the COPY row rewriter returns: views of the input and the
// replacement values, joined once and cut into chunks the server's message limit allows.

/**
 * Output longer than this is returned as several chunks (views, no copy): CopyData
 * boundaries carry no meaning, and a rewrite that grows a big client message must
 * not cross the server's 1 GB message limit.
 */
export const MAX_OUTPUT_CHUNK = 16 * 1024 * 1024;

/** Chunks to forward, one CopyData each; a Promise only when a transform was async. */
export type CopyOutput = Buffer[] | Promise<Buffer[]>;

const EMPTY = Buffer.alloc(0);

/** The output of one push: views of the input plus replacement values, joined once. */
export class Pieces {
  private readonly parts: Buffer[] = [];
  private waits: Promise<void>[] | undefined;

  add(b: Buffer): void {
    if (b.length > 0) this.parts.push(b);
  }

  defer(p: Promise<Buffer>): void {
    const i = this.parts.push(EMPTY) - 1;
    (this.waits ??= []).push(
      p.then((b) => {
        this.parts[i] = b;
      }),
    );
  }

  /** The push failed: keep the transforms still running from raising unhandled rejections. */
  abandon(): void {
    for (const w of this.waits ?? []) w.catch(() => {});
  }

  finish(): CopyOutput {
    return this.waits ? Promise.all(this.waits).then(() => this.joined()) : this.joined();
  }

  private joined(): Buffer[] {
    const p = this.parts;
    const b = p.length === 1 ? p[0] : Buffer.concat(p);
    if (b.length <= MAX_OUTPUT_CHUNK) return b.length > 0 ? [b] : [];
    const out: Buffer[] = [];
    for (let i = 0; i < b.length; i += MAX_OUTPUT_CHUNK) out.push(b.subarray(i, i + MAX_OUTPUT_CHUNK));
    return out;
  }
}
