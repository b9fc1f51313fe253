// A `CMEK …` admin command arriving as a simple Query: it never reaches Postgres.
// The proxy answers it itself — NOTICE progress while it runs, then
// RowDescription/DataRow/CommandComplete (or an ErrorResponse) and a
// ReadyForQuery carrying the server's real transaction status.
import { encodeCommandComplete } from '../protocol/backend/command-complete.js';
import { encodeDataRow } from '../protocol/backend/data-row.js';
import { encodeNoticeResponse } from '../protocol/backend/error-response.js';
import { encodeReadyForQuery } from '../protocol/backend/ready-for-query.js';
import { encodeRowDescription } from '../protocol/backend/row-description.js';
import type { InterceptContext, SessionInfo, Verdict } from '../proxy/interceptor.js';
import type { AdminGateway } from './admin-gateway.js';
import { errorFrame } from './refusal.js';
import { TxStatus } from '../protocol/codes.js';
import { SessionDb } from './session-db.js';

const TEXT_OID = 25;

export function runAdmin(gateway: AdminGateway | undefined, info: SessionInfo, text: string, ctx: InterceptContext): Verdict | Promise<Verdict> {
  const finish = (frames: Buffer[]): null => {
    frames.push(encodeReadyForQuery(ctx.state!.txStatus));
    ctx.sendToClient(Buffer.concat(frames));
    return null; // the Query itself is not forwarded
  };
  if (!gateway) {
    return finish([errorFrame({ code: '0A000', message: 'pgcmek: CMEK admin commands are not enabled on this proxy' })]);
  }
  if (ctx.state!.txStatus !== TxStatus.Idle || ctx.state!.queue.length > 0) {
    return finish([errorFrame({ code: '25001', message: 'pgcmek: CMEK admin commands cannot run inside a transaction block or a pipeline' })]);
  }
  const notice = (message: string) => ctx.sendToClient(encodeNoticeResponse({ severity: 'NOTICE', code: '00000', message }), { ordered: false });
  return gateway.run(info, text, new SessionDb(ctx), notice).then(
    (reply) => {
      const frames: Buffer[] = [];
      if (reply.columns.length > 0) {
        frames.push(
          encodeRowDescription(
            reply.columns.map((name) => ({ name, tableOid: 0, columnAttr: 0, typeOid: TEXT_OID, typeSize: -1, typeModifier: -1, format: 0 })),
          ),
        );
        for (const row of reply.rows) frames.push(encodeDataRow(row.map((v) => (v === null ? null : Buffer.from(v, 'utf8')))));
      }
      frames.push(encodeCommandComplete(reply.tag));
      return finish(frames);
    },
    (err: unknown) => {
      const e = err as { sqlstate?: string; message?: string; hint?: string };
      return finish([errorFrame({ code: e.sqlstate ?? 'XX000', message: e.message ?? String(err), hint: e.hint })]);
    },
  );
}
