// One in-flight promise per id: concurrent callers asking for the same slow
// thing (a remote unwrap, a rewrap of a DEK many values share) wait on one
// backend call instead of each making their own. Failures are never kept, so
// the next caller retries; successes are kept only when `keep` > 0 (bounded,
// oldest dropped first).
export class SingleFlight<T> {
  private readonly flights = new Map<string, Promise<T>>();

  /** keep: how many settled results to remember (0 = forget each once it settles). */
  constructor(private readonly keep = 0) {}

  run(id: string, make: () => Promise<T>): Promise<T> {
    const known = this.flights.get(id);
    if (known) return known;
    const p = make();
    const forget = () => {
      if (this.flights.get(id) === p) this.flights.delete(id);
    };
    p.then(this.keep > 0 ? undefined : forget, forget);
    if (this.keep > 0 && this.flights.size >= this.keep) this.flights.delete(this.flights.keys().next().value!);
    this.flights.set(id, p);
    return p;
  }

  clear(): void {
    this.flights.clear();
  }
}
