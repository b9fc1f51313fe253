// The catalog's public surface (the proxy and the admin commands import from here).
export { buildCatalog, quoteIdent, type BuildOptions } from './build.js';
export { CatalogCache, type CatalogCacheOptions } from './cache.js';
export { checkColumnType, isJsonType, JSON_OID, JSONB_OID } from './column-types.js';
export type { Db } from './db.js';
export { viewColumnOrigins, parseNodeTree, NodeTreeError } from './node-tree.js';
export { catalogQuery, sqlLiteral, CATALOG_COLUMNS, type CatalogRow } from './query.js';
export { resolveCatalog } from './resolve.js';
export type { ColumnVia, RelationColumn, RelationColumns, ResolvedCatalog, ResolvedColumn } from './types.js';
