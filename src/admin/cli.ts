// PLACEHOLDER owned by the admin work (issue 5): replaced by the real commands.
/** Runs `pgcmek <command> ...` for backfill|rotate-kek|status|verify|decrypt-existing; returns the exit code. */
export async function runAdminCli(command: string, _argv: string[]): Promise<number> {
  process.stderr.write(`pgcmek ${command}: not built yet\n`);
  return 1;
}
