// Counts the `CMEK …` admin commands a proxy runs: how many are running, and how
// each finished. Their row progress arrives through createAdminGateway's
// onProgress (ProxyStats.adminProgressFn).
import { parseAdminCommand } from '../admin/parse.js';
import { AdminError } from '../admin/errors.js';
import type { AdminGateway } from '../encryption/admin-gateway.js';
import type { ProxyStats } from './stats.js';

/** `status`, `verify`, `encrypt`, `rotate`, `decrypt`, or `invalid` for text that does not parse. */
export function adminCommandKind(text: string): string {
  const cmd = parseAdminCommand(text);
  return cmd instanceof AdminError ? 'invalid' : cmd.kind;
}

export function instrumentAdmin(gateway: AdminGateway, stats: ProxyStats): AdminGateway {
  return {
    async run(info, text, db, notice) {
      const kind = adminCommandKind(text);
      stats.adminStarted(kind);
      try {
        const reply = await gateway.run(info, text, db, notice);
        stats.adminEnded(kind, 'ok');
        return reply;
      } catch (e) {
        stats.adminEnded(kind, 'error');
        throw e;
      }
    },
  };
}
