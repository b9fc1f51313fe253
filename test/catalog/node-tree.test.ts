import { describe, expect, it } from 'vitest';
import { NodeTreeError, parseNodeTree, viewColumnOrigins } from '../../src/catalog/node-tree.js';

// Shapes copied from PG 15 and 18 pg_rewrite.ev_action (trimmed to the fields that matter).
const PG18 =
  '({QUERY :commandType 1 :rtable ({RANGETBLENTRY :alias <> :eref {ALIAS :aliasname t :colnames ("id" "secret" "MiXed")} :relid 16384}) ' +
  ':targetList ({TARGETENTRY :expr {VAR :varno 1 :varattno 1 :vartype 23 :varnullingrels (b) :location -1} :resno 1 :resname id :ressortgroupref 0 :resorigtbl 16384 :resorigcol 1 :resjunk false} ' +
  '{TARGETENTRY :expr {FUNCEXPR :funcid 871 :args ({VAR :varno 1 :varattno 2}) :location -1} :resno 2 :resname u :ressortgroupref 0 :resorigtbl 0 :resorigcol 0 :resjunk false} ' +
  '{TARGETENTRY :expr {VAR :varno 1 :varattno 3} :resno 3 :resname MiXed :ressortgroupref 0 :resorigtbl 16384 :resorigcol 3 :resjunk false}) :override 0 :stmt_len -1})';

describe('pg_node_tree reader', () => {
  it('reads the top-level target list origins', () => {
    expect(viewColumnOrigins(PG18)).toEqual([
      { resno: 1, tableOid: 16384, attnum: 1 },
      { resno: 3, tableOid: 16384, attnum: 3 },
    ]);
  });

  it('ignores target lists of nested subqueries and junk entries', () => {
    const nested =
      '({QUERY :rtable ({RANGETBLENTRY :rtekind 1 :subquery {QUERY :targetList ({TARGETENTRY :expr {VAR} :resno 1 :resname x :resorigtbl 777 :resorigcol 5 :resjunk false})}}) ' +
      ':targetList ({TARGETENTRY :expr {CONST :consttype 23 :constlen 4 :constbyval true :constisnull false :location 7 :constvalue 4 [ 1 0 0 0 0 0 0 0 ]} :resno 1 :resname c :resorigtbl 0 :resorigcol 0 :resjunk false} ' +
      '{TARGETENTRY :expr {VAR} :resno 2 :resname j :resorigtbl 16384 :resorigcol 2 :resjunk true}) :stmt_len 0})';
    expect(viewColumnOrigins(nested)).toEqual([]);
  });

  it('handles escaped names: spaces, parentheses, braces, a leading colon or digit', () => {
    const tree =
      '({QUERY :targetList ({TARGETENTRY :expr {VAR} :resno 1 :resname my\\ \\(col\\)\\{x\\} :resorigtbl 5 :resorigcol 2 :resjunk false} ' +
      '{TARGETENTRY :expr {VAR} :resno 2 :resname :resorigtbl :ressortgroupref 0 :resorigtbl 6 :resorigcol 3 :resjunk false} ' +
      '{TARGETENTRY :expr {VAR} :resno 3 :resname \\1abc :resorigtbl 7 :resorigcol 4 :resjunk false})})';
    expect(viewColumnOrigins(tree)).toEqual([
      { resno: 1, tableOid: 5, attnum: 2 },
      { resno: 2, tableOid: 6, attnum: 3 },
      { resno: 3, tableOid: 7, attnum: 4 },
    ]);
    const parsed = parseNodeTree('{A :s my\\ \\(col\\) :e "" :n <> :l (i 1 2)}');
    expect(parsed).toMatchObject({ type: 'A' });
    const fields = (parsed as { fields: Map<string, unknown> }).fields;
    expect(fields.get('s')).toBe('my (col)');
    expect(fields.get('e')).toBe('""');
    expect(fields.get('n')).toBeNull();
    expect(fields.get('l')).toEqual(['i', '1', '2']);
  });

  it('rejects malformed text', () => {
    expect(() => parseNodeTree('({QUERY :targetList (')).toThrow(NodeTreeError);
    expect(() => parseNodeTree('{QUERY x}')).toThrow(NodeTreeError);
    expect(() => parseNodeTree('')).toThrow(NodeTreeError);
    expect(() => parseNodeTree('{A :b 1} extra')).toThrow(NodeTreeError);
  });

  it('maps nothing for a rule with several queries or a non-query', () => {
    expect(viewColumnOrigins('({QUERY :targetList <>} {QUERY :targetList <>})')).toEqual([]);
    expect(viewColumnOrigins('<>')).toEqual([]);
  });
});
