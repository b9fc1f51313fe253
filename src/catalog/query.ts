// The one statement that reads what the proxy needs to know about the configured
// tables from the live catalog. It runs inside the client's own upstream session
// right after authentication, as an internal simple-protocol Query, so it:
//   - is a single read-only SELECT over pg_catalog tables every role may read;
//   - schema-qualifies every catalog object and function (a hostile search_path
//     cannot shadow them) and changes no session state;
//   - returns text only (every column cast to text), one row per relation;
//   - embeds the configured names as E'' literals (no parameters in the simple
//     protocol; E'' escaping is correct whatever standard_conforming_strings is).
// Rows: kind 't' = a configured table or an inheritance/partition descendant of one
// (cfg_schema/cfg_table name the configured ancestor); kind 'v' = a view or
// materialized view that depends, directly or through other views, on one of those
// relations (ev_action = its stored query tree, parsed in node-tree.ts).
import type { TablePolicy } from '../config/types.js';

/** The column names of catalogQuery's result, in order (the proxy zips DataRows with them). */
export const CATALOG_COLUMNS = ['kind', 'rel_oid', 'nspname', 'relname', 'relkind', 'cfg_schema', 'cfg_table', 'attrs', 'ev_action'] as const;
export type CatalogRow = Record<(typeof CATALOG_COLUMNS)[number], string | null>;

/** A string literal that means the same under either standard_conforming_strings setting. */
export function sqlLiteral(s: string): string {
  if (s.includes('\u0000')) throw new Error('NUL byte in an identifier');
  return `E'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

export function catalogQuery(policies: readonly TablePolicy[]): string {
  const cfg = policies.length
    ? policies.map((p) => `(${sqlLiteral(p.schema)}, ${sqlLiteral(p.table)})`).join(', ')
    : `(NULL::text, NULL::text)`;
  // attrs: [[attnum, name, type oid, formatted type, base type oid (domains resolved), base typmod], ...]
  return `WITH RECURSIVE
cfg(schema_name, table_name) AS (VALUES ${cfg}),
tabs(oid, cfg_schema, cfg_table) AS (
  SELECT c.oid, cfg.schema_name::text, cfg.table_name::text
    FROM cfg
    JOIN pg_catalog.pg_namespace n ON n.nspname = cfg.schema_name
    JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = cfg.table_name
  UNION
  SELECT i.inhrelid, t.cfg_schema, t.cfg_table
    FROM tabs t JOIN pg_catalog.pg_inherits i ON i.inhparent = t.oid
),
deps(oid) AS (
  SELECT r.ev_class
    FROM pg_catalog.pg_depend d
    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
   WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
     AND d.refobjid IN (SELECT oid FROM tabs)
     AND r.ev_class <> d.refobjid
  UNION
  SELECT r.ev_class
    FROM deps v
    JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = v.oid
    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
   WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
     AND r.ev_class <> d.refobjid
),
dom(oid, base, basemod) AS (
  SELECT t.oid, t.typbasetype, t.typtypmod FROM pg_catalog.pg_type t WHERE t.typtype = 'd'
  UNION ALL
  SELECT d.oid, b.typbasetype, CASE WHEN b.typtypmod >= 0 THEN b.typtypmod ELSE d.basemod END
    FROM dom d JOIN pg_catalog.pg_type b ON b.oid = d.base AND b.typtype = 'd'
),
base(oid, base, basemod) AS (
  SELECT d.oid, d.base, d.basemod FROM dom d
   WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type x WHERE x.oid = d.base AND x.typtype = 'd')
),
rels(kind, oid, cfg_schema, cfg_table) AS (
  SELECT 't', oid, cfg_schema, cfg_table FROM tabs
  UNION ALL
  SELECT DISTINCT 'v', oid, NULL::text, NULL::text FROM deps
)
SELECT r.kind,
       c.oid::text AS rel_oid,
       n.nspname::text AS nspname,
       c.relname::text AS relname,
       c.relkind::text AS relkind,
       r.cfg_schema,
       r.cfg_table,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(a.attnum, a.attname, a.atttypid,
                 pg_catalog.format_type(a.atttypid, a.atttypmod),
                 COALESCE(b.base, a.atttypid),
                 CASE WHEN b.oid IS NULL THEN a.atttypmod ELSE COALESCE(NULLIF(a.atttypmod, -1), b.basemod) END)
                 ORDER BY a.attnum)
          FROM pg_catalog.pg_attribute a
          LEFT JOIN base b ON b.oid = a.atttypid
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)::text AS attrs,
       CASE WHEN r.kind = 'v' THEN
         (SELECT w.ev_action::text FROM pg_catalog.pg_rewrite w WHERE w.ev_class = c.oid AND w.rulename = '_RETURN')
       END AS ev_action
  FROM rels r
  JOIN pg_catalog.pg_class c ON c.oid = r.oid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace`;
}
