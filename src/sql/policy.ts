// Which relations and columns are encrypted: `Config.encrypted` indexed for the
// analysis, plus the textual prefilter that lets most statements skip parsing.
//
// Name resolution assumes the default search_path ("$user", public): a
// schema-qualified name matches exactly; an unqualified name matches the
// configured table of that name in `public`, else the one configured table of that
// name in any other schema (fail closed: better encrypt a value bound for an
// unconfigured table of the same name than leak one). Several non-public matches
// are ambiguous and refused.
import type { ColumnPolicy, TablePolicy } from '../config/types.js';

export interface PolicyIndex {
  readonly tables: readonly TablePolicy[];
  /** The configured table a relation name refers to; 'ambiguous' = configured in several schemas. */
  lookup(schema: string | undefined, table: string): TablePolicy | 'ambiguous' | undefined;
  column(policy: TablePolicy, column: string): ColumnPolicy | undefined;
  /** Cheap test: may this text name a configured table? False = no need to parse. */
  mayMention(text: string): boolean;
  /** The first configured table name found in a text (messages for unparsable statements). */
  firstMention(text: string): TablePolicy | undefined;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function buildPolicyIndex(tables: readonly TablePolicy[]): PolicyIndex {
  const byName = new Map<string, TablePolicy[]>();
  const columns = new Map<TablePolicy, Map<string, ColumnPolicy>>();
  for (const t of tables) {
    const list = byName.get(t.table) ?? [];
    list.push(t);
    byName.set(t.table, list);
    columns.set(t, new Map(t.columns.map((c) => [c.column, c])));
  }

  // Any spelling of a configured table holds its name as a whole identifier
  // (case-insensitively; identifier characters are letters, digits, _, $ and any
  // non-ASCII character), except a quoted name with a doubled quote inside and a
  // U&"…" identifier written with Unicode escapes: those take the slow path too.
  const variants = new Set<string>();
  for (const t of tables) {
    variants.add(escapeRegex(t.table));
    if (t.table.includes('"')) variants.add(escapeRegex(t.table.replaceAll('"', '""')));
  }
  const word = '[A-Za-z0-9_$\\u0080-\\uffff]';
  const mention =
    variants.size === 0 ? null : new RegExp(`(?<!${word})(?:${[...variants].join('|')})(?!${word})|u&"`, 'i');
  const lowerNames = [...byName.keys()].map((n) => [n.toLowerCase(), n] as const);

  return {
    tables,
    lookup(schema, table) {
      const candidates = byName.get(table);
      if (!candidates) return undefined;
      if (schema !== undefined) return candidates.find((c) => c.schema === schema);
      const pub = candidates.find((c) => c.schema === 'public');
      if (pub) return pub;
      if (candidates.length === 1) return candidates[0];
      return 'ambiguous';
    },
    column(policy, column) {
      return columns.get(policy)?.get(column);
    },
    mayMention(text) {
      return mention !== null && mention.test(text);
    },
    firstMention(text) {
      const lower = text.toLowerCase();
      for (const [l, name] of lowerNames) if (lower.includes(l)) return byName.get(name)![0];
      return undefined;
    },
  };
}
