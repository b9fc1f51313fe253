// Runs the catalog query over any connection and builds the resolved catalog.
import type { TablePolicy } from '../config/types.js';
import { buildCatalog, type BuildOptions } from './build.js';
import type { Db } from './db.js';
import { catalogQuery, type CatalogRow } from './query.js';
import type { ResolvedCatalog } from './types.js';

export async function resolveCatalog(db: Db, policies: readonly TablePolicy[], opts?: BuildOptions): Promise<ResolvedCatalog> {
  const { rows } = await db.query(catalogQuery(policies));
  return buildCatalog(rows as Partial<CatalogRow>[], policies, opts);
}
