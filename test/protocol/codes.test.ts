import { describe, expect, it } from 'vitest';
import { AuthCode, BackendCode, FrontendCode, StartupCode, codeName } from '../../src/protocol/codes.js';

function unique(table: Record<string, number>): boolean {
  return new Set(Object.values(table)).size === Object.keys(table).length;
}

describe('message codes', () => {
  it('are unique within each direction', () => {
    expect(unique(FrontendCode)).toBe(true);
    expect(unique(BackendCode)).toBe(true);
    expect(unique(StartupCode)).toBe(true);
    expect(unique(AuthCode)).toBe(true);
  });

  it('match the letters Postgres documents', () => {
    const letters = (t: Record<string, number>) => Object.fromEntries(Object.entries(t).map(([k, v]) => [k, String.fromCharCode(v)]));
    expect(letters(FrontendCode)).toEqual({
      Bind: 'B', Close: 'C', CopyData: 'd', CopyDone: 'c', CopyFail: 'f', Describe: 'D', Execute: 'E', Flush: 'H',
      FunctionCall: 'F', Parse: 'P', Password: 'p', Query: 'Q', Sync: 'S', Terminate: 'X',
    });
    expect(letters(BackendCode)).toEqual({
      Authentication: 'R', BackendKeyData: 'K', BindComplete: '2', CloseComplete: '3', CommandComplete: 'C',
      CopyBothResponse: 'W', CopyData: 'd', CopyDone: 'c', CopyInResponse: 'G', CopyOutResponse: 'H', DataRow: 'D',
      EmptyQueryResponse: 'I', ErrorResponse: 'E', FunctionCallResponse: 'V', NegotiateProtocolVersion: 'v', NoData: 'n',
      NoticeResponse: 'N', NotificationResponse: 'A', ParameterDescription: 't', ParameterStatus: 'S', ParseComplete: '1',
      PortalSuspended: 's', ReadyForQuery: 'Z', RowDescription: 'T',
    });
    expect(StartupCode.Protocol30).toBe(3 << 16);
    expect(StartupCode.Protocol32).toBe((3 << 16) | 2);
  });

  it('names a byte by its direction: D is Describe from a client, DataRow from a server', () => {
    expect(codeName(0x44, 'frontend')).toBe('Describe');
    expect(codeName(0x44, 'backend')).toBe('DataRow');
    expect(codeName(0x01, 'backend')).toBe('0x01');
  });
});
