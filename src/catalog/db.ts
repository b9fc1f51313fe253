// The least a connection must offer to the catalog and admin code: a pg.Client
// fits, and the proxy supplies its own over an upstream session. Parameters are
// $1..$n (extended protocol); rows are objects keyed by column name (values as
// text or as pg parses them); `rowCount` is the CommandComplete count, which the
// admin commands' compare-and-set UPDATEs rely on.
export interface Db {
  query(sql: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount?: number | null }>;
}
