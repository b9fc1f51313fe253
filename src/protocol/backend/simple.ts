// Payload-less server messages, built once.
import { BackendCode } from '../codes.js';
import { emptyFrame } from '../frame.js';

export const PARSE_COMPLETE: Buffer = emptyFrame(BackendCode.ParseComplete);
export const BIND_COMPLETE: Buffer = emptyFrame(BackendCode.BindComplete);
export const CLOSE_COMPLETE: Buffer = emptyFrame(BackendCode.CloseComplete);
export const NO_DATA: Buffer = emptyFrame(BackendCode.NoData);
export const PORTAL_SUSPENDED: Buffer = emptyFrame(BackendCode.PortalSuspended);
export const EMPTY_QUERY_RESPONSE: Buffer = emptyFrame(BackendCode.EmptyQueryResponse);
