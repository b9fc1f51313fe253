// Turns catalogQuery's rows into a ResolvedCatalog: configured columns found by
// name in their tables, in every partition/inheritance child (by name: a child's
// attnums may differ), and in every view or materialized view column that is a
// plain reference to one of them (through any number of views).
import type { ColumnPolicy, TablePolicy } from '../config/types.js';
import { checkColumnType, isJsonType } from './column-types.js';
import { NodeTreeError, viewColumnOrigins } from './node-tree.js';
import type { CatalogRow } from './query.js';
import type { RelationColumns, ResolvedCatalog, ResolvedColumn } from './types.js';

interface Attr {
  attnum: number;
  name: string;
  typeOid: number;
  typeName: string;
  baseTypeOid: number;
  baseTypmod: number;
}

interface Relation {
  oid: number;
  schema: string;
  table: string;
  relkind: string;
  attrs: Attr[];
  /** Configured tables this relation is (or descends from), as "schema\0table". */
  roots: Set<string>;
  evAction?: string;
}

export interface BuildOptions {
  /** Envelope characters besides the Fernet token (for varchar(n) checks); see column-types.ts. */
  envelopeOverhead?: number;
}

const TABLE_KINDS = new Set(['r', 'p', 'f']);
const key = (schema: string, table: string) => `${schema}\u0000${table}`;
// attnum <= 1600 (MaxHeapAttributeNumber) and OIDs < 2^32: the sum stays an exact double.
const slot = (oid: number, attnum: number) => oid * 2048 + attnum;

export function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}
const qname = (schema: string, table: string, column?: string) =>
  `${quoteIdent(schema)}.${quoteIdent(table)}${column === undefined ? '' : '.' + quoteIdent(column)}`;

function parseAttrs(json: string | null): Attr[] {
  if (!json) return [];
  const arr = JSON.parse(json) as [number, string, string | number, string, string | number, number][];
  return arr.map(([attnum, name, typeOid, typeName, baseTypeOid, baseTypmod]) => ({
    attnum: Number(attnum),
    name,
    typeOid: Number(typeOid),
    typeName,
    baseTypeOid: Number(baseTypeOid),
    baseTypmod: Number(baseTypmod),
  }));
}

function readRelations(rows: readonly Partial<CatalogRow>[]): { tables: Map<number, Relation>; views: Relation[] } {
  const tables = new Map<number, Relation>();
  const views = new Map<number, Relation>();
  for (const r of rows) {
    const oid = Number(r.rel_oid);
    const target = r.kind === 'v' ? views : tables;
    let rel = target.get(oid);
    if (!rel) {
      rel = { oid, schema: r.nspname ?? '', table: r.relname ?? '', relkind: r.relkind ?? '', attrs: parseAttrs(r.attrs ?? null), roots: new Set() };
      if (r.ev_action) rel.evAction = r.ev_action;
      target.set(oid, rel);
    }
    if (r.kind === 't' && r.cfg_schema != null && r.cfg_table != null) rel.roots.add(key(r.cfg_schema, r.cfg_table));
  }
  // A configured table that is also a view's source stays a table.
  for (const [oid, rel] of tables) if (TABLE_KINDS.has(rel.relkind)) views.delete(oid);
  return { tables, views: [...views.values()] };
}

export function buildCatalog(rows: readonly Partial<CatalogRow>[], policies: readonly TablePolicy[], opts: BuildOptions = {}): ResolvedCatalog {
  const warnings: string[] = [];
  const errors: string[] = [];
  const errorByColumn = new Map<string, string>();
  const columnError = (schema: string, table: string, column: string, message: string) => {
    const text = `encrypted column ${qname(schema, table, column)}: ${message}`;
    errors.push(text);
    errorByColumn.set(`${key(schema, table)}\u0000${column}`, text);
  };
  const byslot = new Map<number, ResolvedColumn>();
  const relations = new Map<string, RelationColumns>();
  const { tables, views } = readRelations(rows);

  const policyOf = new Map<string, TablePolicy>(policies.map((p) => [key(p.schema, p.table), p]));
  const rootRel = new Map<string, Relation>();
  for (const rel of tables.values()) {
    const k = key(rel.schema, rel.table);
    if (rel.roots.has(k)) rootRel.set(k, rel);
  }

  // Which policies hold, checked once on each configured table itself.
  const usable = new Map<string, ColumnPolicy[]>();
  for (const p of policies) {
    const rel = rootRel.get(key(p.schema, p.table));
    const cols = p.columns.map((c) => c.column).join(', ');
    if (!rel) {
      warnings.push(`encrypted table ${qname(p.schema, p.table)} does not exist in this database; its columns (${cols}) are not encrypted here`);
      continue;
    }
    if (!TABLE_KINDS.has(rel.relkind)) {
      const what = rel.relkind === 'v' ? 'a view' : rel.relkind === 'm' ? 'a materialized view' : `not a table (relkind ${rel.relkind})`;
      warnings.push(`encrypted table ${qname(p.schema, p.table)} is ${what}; configure the table it reads from (its columns are mapped automatically)`);
      continue;
    }
    const ok: ColumnPolicy[] = [];
    for (const c of p.columns) {
      const attr = rel.attrs.find((a) => a.name === c.column);
      if (!attr) {
        warnings.push(`encrypted column ${qname(p.schema, p.table, c.column)} does not exist; it is not encrypted here`);
        continue;
      }
      const verdict = checkColumnType(attr.baseTypeOid, attr.baseTypmod, attr.typeName, opts.envelopeOverhead);
      if (!verdict.ok) {
        columnError(p.schema, p.table, c.column, verdict.message ?? 'unsupported type');
        continue;
      }
      if (c.jsonPaths && !isJsonType(attr.baseTypeOid)) {
        columnError(p.schema, p.table, c.column, `json_paths needs a json or jsonb column, not ${attr.typeName}`);
        continue;
      }
      if (verdict.message) warnings.push(`encrypted column ${qname(p.schema, p.table, c.column)}: ${verdict.message}`);
      ok.push(c);
    }
    usable.set(key(p.schema, p.table), ok);
  }

  // Column names by schema, then table: one frozen array per relation, so the
  // analyzer's check that a cached plan still matches the catalog (it runs per
  // statement) is an identity comparison, with no key string or array built.
  const namesOf = new Map<string, Map<string, readonly string[]>>();
  // Tables and their descendants. A table's own configuration beats an ancestor's.
  for (const rel of tables.values()) {
    if (!TABLE_KINDS.has(rel.relkind)) continue;
    const own = key(rel.schema, rel.table);
    const order = [...rel.roots].sort((a, b) => (a === own ? -1 : b === own ? 1 : 0));
    const policyByName = new Map<string, { policy: ColumnPolicy; root: string }>();
    for (const root of order) {
      for (const c of usable.get(root) ?? []) if (!policyByName.has(c.column)) policyByName.set(c.column, { policy: c, root });
    }
    const columns: RelationColumns['columns'] = [];
    for (const a of rel.attrs) {
      const hit = policyByName.get(a.name);
      const base = { name: a.name, attnum: a.attnum, typeOid: a.typeOid, typeName: a.typeName, baseTypeOid: a.baseTypeOid };
      if (!hit) {
        columns.push(base);
        continue;
      }
      const src = policyOf.get(hit.root) as TablePolicy;
      columns.push({ ...base, policy: hit.policy, source: { schema: src.schema, table: src.table } });
      byslot.set(slot(rel.oid, a.attnum), {
        schema: rel.schema,
        table: rel.table,
        column: a.name,
        tableOid: rel.oid,
        attnum: a.attnum,
        typeOid: a.typeOid,
        typeName: a.typeName,
        policy: hit.policy,
        via: hit.root === own ? 'table' : 'child',
        source: { schema: src.schema, table: src.table, column: a.name },
      });
    }
    relations.set(own, { oid: rel.oid, schema: rel.schema, table: rel.table, relkind: rel.relkind, columns });
    let inSchema = namesOf.get(rel.schema);
    if (!inSchema) namesOf.set(rel.schema, (inSchema = new Map()));
    inSchema.set(rel.table, Object.freeze(columns.map((c) => c.name)));
  }

  // Views: map plain column references, repeating until views over views settle.
  const origins = new Map<number, ReturnType<typeof viewColumnOrigins>>();
  for (const v of views) {
    if (!v.evAction) continue;
    try {
      origins.set(v.oid, viewColumnOrigins(v.evAction));
    } catch (err) {
      if (!(err instanceof NodeTreeError)) throw err;
      warnings.push(`could not read the definition of view ${qname(v.schema, v.table)} (${err.message}); its columns are not decrypted by origin`);
    }
  }
  for (let changed = true; changed; ) {
    changed = false;
    for (const v of views) {
      for (const o of origins.get(v.oid) ?? []) {
        if (byslot.has(slot(v.oid, o.resno))) continue;
        const base = byslot.get(slot(o.tableOid, o.attnum));
        const attr = v.attrs.find((a) => a.attnum === o.resno);
        if (!base || !attr) continue;
        byslot.set(slot(v.oid, o.resno), {
          schema: v.schema,
          table: v.table,
          column: attr.name,
          tableOid: v.oid,
          attnum: attr.attnum,
          typeOid: attr.typeOid,
          typeName: attr.typeName,
          policy: base.policy,
          via: v.relkind === 'm' ? 'matview' : 'view',
          source: base.source,
        });
        changed = true;
      }
    }
  }

  const columns = [...byslot.values()];
  return {
    lookup: (tableOid, attnum) => byslot.get(slot(tableOid, attnum)),
    columnsOf: (schema, table) => namesOf.get(schema)?.get(table),
    relation: (schema, table) => relations.get(key(schema, table)),
    tables: [...relations.values()],
    columns,
    warnings,
    errors,
    errorOf: (schema, table, column) => errorByColumn.get(`${key(schema, table)}\u0000${column}`),
  };
}
