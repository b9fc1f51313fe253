// Turns the names in a command (`ALL`, `table`, `table.column`,
// `schema.table.column`) into configured columns and the leaf tables storing
// them. Only configured columns can be targets: the config is what says a
// column is encrypted, and the live catalog says where it is stored.
import type { Db } from '../catalog/db.js';
import type { ResolvedCatalog } from '../catalog/types.js';
import type { ColumnPolicy, TablePolicy } from '../config/types.js';
import type { TargetName, Targets } from './command.js';
import { AdminError, SqlState } from './errors.js';
import { displayName, jsonTypeOf, keyOf, valueKindOf, type ColumnTarget, type LeafPlan } from './plan.js';

interface Wanted {
  table: TablePolicy;
  column: ColumnPolicy;
  /** Named explicitly (errors) rather than through ALL (notices). */
  explicit: boolean;
}

function tablesNamed(policies: readonly TablePolicy[], parts: string[]): TablePolicy[] {
  if (parts.length === 2) return policies.filter((p) => p.schema === parts[0] && p.table === parts[1]);
  const byName = policies.filter((p) => p.table === parts[0]);
  // An unqualified name prefers public, as the default search_path would.
  const inPublic = byName.filter((p) => p.schema === 'public');
  return inPublic.length === 1 ? inPublic : byName;
}

function one(found: TablePolicy[], name: TargetName): TablePolicy {
  if (found.length > 1) {
    throw new AdminError(SqlState.ambiguous, `table name "${name.text}" is ambiguous (${found.map((t) => displayName(t.schema, t.table)).join(', ')})`, 'qualify it with its schema');
  }
  return found[0];
}

/** What a name means: `a.b` is table a's column b, or schema a's table b (an error if both). */
function resolveName(policies: readonly TablePolicy[], name: TargetName): Wanted[] {
  const { parts } = name;
  const columnOf = (tablePart: string[], column: string): Wanted[] | undefined => {
    const found = tablesNamed(policies, tablePart);
    if (found.length === 0) return undefined;
    const t = one(found, name);
    const c = t.columns.find((x) => x.column === column);
    if (!c) {
      throw new AdminError(SqlState.undefinedColumn, `column "${column}" of ${displayName(t.schema, t.table)} is not an encrypted column in the configuration`, `configured: ${t.columns.map((x) => x.column).join(', ')}`);
    }
    return [{ table: t, column: c, explicit: true }];
  };
  const wholeTable = (tablePart: string[]): Wanted[] | undefined => {
    const found = tablesNamed(policies, tablePart);
    if (found.length === 0) return undefined;
    const t = one(found, name);
    return t.columns.map((c) => ({ table: t, column: c, explicit: true }));
  };
  let hit: Wanted[] | undefined;
  if (parts.length === 3) hit = columnOf(parts.slice(0, 2), parts[2]);
  else if (parts.length === 1) hit = wholeTable(parts);
  else {
    const asTable = wholeTable(parts);
    let asColumn: Wanted[] | undefined;
    try {
      asColumn = columnOf(parts.slice(0, 1), parts[1]);
    } catch (err) {
      if (!asTable) throw err;
    }
    if (asTable && asColumn) {
      throw new AdminError(SqlState.ambiguous, `"${name.text}" names both a table and a column`, `write schema.table or schema.table.column`);
    }
    hit = asTable ?? asColumn;
  }
  if (!hit) {
    throw new AdminError(SqlState.undefinedTable, `"${name.text}" is not a table with encrypted columns in the configuration`, 'CMEK STATUS lists the configured columns');
  }
  return hit;
}

export interface PlannedTargets {
  targets: ColumnTarget[];
  /** Configured columns skipped (missing in this database, a type that cannot hold envelopes...). */
  notices: string[];
}

/** The configured columns a command works on, with their leaf tables and keys. */
export async function planTargets(db: Db, policies: readonly TablePolicy[], catalog: ResolvedCatalog, targets: Targets): Promise<PlannedTargets> {
  let wanted: Wanted[];
  if (targets === 'all' || targets.length === 0) {
    wanted = policies.flatMap((t) => t.columns.map((c) => ({ table: t, column: c, explicit: false })));
  } else {
    wanted = [];
    const seen = new Set<string>();
    for (const n of targets) {
      for (const w of resolveName(policies, n)) {
        const k = `${w.table.schema}\u0000${w.table.table}\u0000${w.column.column}`;
        if (!seen.has(k)) (seen.add(k), wanted.push(w));
      }
    }
  }
  const notices: string[] = [];
  const out: ColumnTarget[] = [];
  for (const w of wanted) {
    const { schema, table } = w.table;
    const name = displayName(schema, table, w.column.column);
    const skip = (sqlstate: string, message: string) => {
      if (w.explicit) throw new AdminError(sqlstate, message);
      notices.push(`${message}: skipped`);
    };
    const rel = catalog.relation(schema, table);
    if (!rel) {
      skip(SqlState.undefinedTable, `${displayName(schema, table)} does not exist in this database`);
      continue;
    }
    const column = rel.columns.find((c) => c.name === w.column.column);
    if (!column?.policy) {
      // Missing, or refused by the catalog (its type cannot hold an envelope): the catalog's message says why.
      const why = catalog.errorOf(schema, table, w.column.column);
      skip(column ? SqlState.featureNotSupported : SqlState.undefinedColumn, why ?? `${name} does not exist in this database`);
      continue;
    }
    const leaves: LeafPlan[] = [];
    for (const r of catalog.tables) {
      const c = r.columns.find((x) => x.name === w.column.column && x.source?.schema === schema && x.source.table === table);
      if (!c?.policy) continue;
      if (r.relkind === 'p') continue; // partitioned: no storage of its own, its partitions are leaves
      if (r.relkind !== 'r') {
        notices.push(`${displayName(r.schema, r.table)} is not a plain table (relkind ${r.relkind}): skipped`);
        continue;
      }
      leaves.push({
        schema: r.schema,
        table: r.table,
        source: { schema, table },
        oid: r.oid,
        relkind: r.relkind,
        column: c.name,
        policy: c.policy,
        valueKind: valueKindOf(c.baseTypeOid, c.policy),
        jsonType: jsonTypeOf(c.baseTypeOid),
        key: await keyOf(db, r.oid),
      });
    }
    out.push({ schema, table, column: w.column.column, policy: column.policy, relkind: rel.relkind, leaves });
  }
  return { targets: out, notices };
}
