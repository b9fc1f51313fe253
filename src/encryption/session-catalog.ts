// What one session knows of its database's catalog: the resolved catalog (shared
// by the layer's cache, loaded inside this session's own connection when
// missing), the last one it saw (reads keep working while a reload is due), and
// how each write target holds its envelope (text, varchar, jsonb).
import type { ResolvedCatalog } from '../catalog/types.js';
import { buildCatalog } from '../catalog/build.js';
import { catalogQuery, type CatalogRow } from '../catalog/query.js';
import { BackendCode as B } from '../protocol/codes.js';
import { decodeDataRow } from '../protocol/backend/data-row.js';
import { decodeRowDescription } from '../protocol/backend/row-description.js';
import { encodeQuery } from '../protocol/frontend/query.js';
import type { InterceptContext } from '../proxy/interceptor.js';
import type { ColumnTarget } from '../sql/types.js';
import type { EncryptionLayer } from './layer.js';
import { shapeOf, type ValueShape } from './values.js';

export class SessionCatalog {
  private lastCatalog: ResolvedCatalog | undefined;
  /** How each write target holds its envelope, for the catalog `shapesWith`. */
  private shapes = new WeakMap<ColumnTarget, ValueShape>();
  private shapesWith: ResolvedCatalog | undefined;

  constructor(
    private readonly layer: EncryptionLayer,
    private readonly database: string,
  ) {}

  /** The last catalog this session saw (also one it loaded), even if the cache has dropped it since. */
  get last(): ResolvedCatalog | undefined {
    return this.lastCatalog;
  }

  current(): ResolvedCatalog | undefined {
    const c = this.layer.catalogs.get(this.database);
    if (c) this.lastCatalog = c;
    return c;
  }

  /** The catalog as of now, or the last one this session saw (reads keep working while a reload is due). */
  forShapes(): ResolvedCatalog | undefined {
    return this.current() ?? this.lastCatalog;
  }

  shapeOf(t: ColumnTarget): ValueShape {
    const catalog = this.forShapes();
    if (catalog !== this.shapesWith) {
      this.shapes = new WeakMap();
      this.shapesWith = catalog;
    }
    // Targets belong to cached plans: one catalog lookup per target, not one per Bind.
    let shape = this.shapes.get(t);
    if (shape === undefined) {
      const rel = catalog?.relation(t.schema, t.table);
      const col = rel?.columns.find((c) => c.name === t.column);
      shape = shapeOf(col?.baseTypeOid ?? 25);
      this.shapes.set(t, shape);
    }
    return shape;
  }

  /** Runs the catalog query inside this session (an internal request: its replies never reach the client). */
  load(ctx: InterceptContext): Promise<ResolvedCatalog> {
    const tables = this.layer.tables;
    const db = this.database;
    return this.layer.catalogs.getOrLoad(db, () =>
      new Promise<ResolvedCatalog>((resolve, reject) => {
        let cols: string[] = [];
        const rows: Partial<CatalogRow>[] = [];
        let failed: string | undefined;
        ctx.injectToServer(encodeQuery(catalogQuery(tables)), {
          message: (code, f) => {
            if (code === B.RowDescription) cols = decodeRowDescription(f).map((x) => x.name);
            else if (code === B.DataRow) {
              const row: Record<string, string | null> = {};
              decodeDataRow(f).forEach((v, i) => (row[cols[i]!] = v === null ? null : v.toString('utf8')));
              rows.push(row as Partial<CatalogRow>);
            } else if (code === B.ErrorResponse) failed = 'the catalog query failed (is the transaction aborted?)';
          },
          done: (_entry, outcome) => {
            if (failed || outcome !== 'ok') return reject(new Error(failed ?? `catalog query ${outcome}`));
            const catalog = buildCatalog(rows, tables);
            this.layer.noteCatalog(db, catalog);
            resolve(catalog);
          },
        });
      }),
    ).then((c) => {
      this.lastCatalog = c;
      return c;
    });
  }
}
