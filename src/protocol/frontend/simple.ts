// Payload-less client messages, built once: Sync ('S'), Flush ('H'), Terminate ('X').
import { FrontendCode } from '../codes.js';
import { emptyFrame } from '../frame.js';

export const SYNC: Buffer = emptyFrame(FrontendCode.Sync);
export const FLUSH: Buffer = emptyFrame(FrontendCode.Flush);
export const TERMINATE: Buffer = emptyFrame(FrontendCode.Terminate);
