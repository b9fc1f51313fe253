// What an admin command asks for, once parsed (from `CMEK ...` SQL text through
// the proxy, or from `pgcmek <command>` options). One shape for both doors.

/** A table or column named in a command: 1 to 3 names, already case-folded as SQL does. */
export interface TargetName {
  parts: string[];
  /** As the user wrote it, for messages. */
  text: string;
}

/** `ALL`, or explicit names (an empty list also means every configured column). */
export type Targets = 'all' | TargetName[];

export type AdminCommand =
  | { kind: 'status'; targets: Targets }
  | { kind: 'verify'; targets: Targets }
  | { kind: 'encrypt'; targets: Targets; batch?: number; dryRun: boolean }
  | { kind: 'rotate'; targets: Targets; batch?: number; dryRun: boolean }
  | { kind: 'decrypt'; targets: Targets; batch?: number; dryRun: boolean; confirm: boolean };

export type AdminCommandKind = AdminCommand['kind'];

export const DEFAULT_BATCH = 500;
export const MAX_BATCH = 50_000;

/** Commands that write to the database. */
export function writes(cmd: AdminCommand): boolean {
  return (cmd.kind === 'encrypt' || cmd.kind === 'rotate' || cmd.kind === 'decrypt') && !cmd.dryRun;
}

/** The command as SQL-like text, for audit lines and messages (names only, never values). */
export function commandText(cmd: AdminCommand): string {
  const t = cmd.targets === 'all' ? 'ALL' : cmd.targets.map((n) => n.text).join(', ');
  const opts = (c: { batch?: number; dryRun: boolean }) => `${c.batch ? ` BATCH ${c.batch}` : ''}${c.dryRun ? ' DRY RUN' : ''}`;
  switch (cmd.kind) {
    case 'status':
      return `CMEK STATUS${t ? ' ' + t : ''}`;
    case 'verify':
      return `CMEK VERIFY${t ? ' ' + t : ''}`;
    case 'encrypt':
      return `CMEK ENCRYPT EXISTING ${t}${opts(cmd)}`;
    case 'rotate':
      return `CMEK ROTATE KEK${t ? ' ' + t : ''}${opts(cmd)}`;
    case 'decrypt':
      return `CMEK DECRYPT EXISTING ${t}${opts(cmd)}${cmd.confirm ? ' CONFIRM' : ''}`;
  }
}
