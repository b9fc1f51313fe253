// The least a connection must offer to the catalog and admin code: a pg.Client
// fits, and the proxy supplies its own over an upstream session.
export interface Db {
  query(sql: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount?: number | null }>;
}
