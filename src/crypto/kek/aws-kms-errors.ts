// What a failed AWS KMS call means and what the operator should check. AWS
// error codes come from the SDK error's `name` (the JSON `__type`); network
// failures have no HTTP status. Messages name VIGILO_CMEK_AWS_KMS_KEY_ID,
// kek.aws_kms.region / endpoint, the IAM permission or the credential chain,
// and never hold a credential or key material.
import type { Classified } from './retry.js';

export const KMS_SETTING = {
  keyId: 'VIGILO_CMEK_AWS_KMS_KEY_ID (kek.aws_kms.key_id)',
  region: 'kek.aws_kms.region (AWS_REGION)',
  endpoint: 'kek.aws_kms.endpoint',
  credentials:
    'the AWS credential chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY[/AWS_SESSION_TOKEN], AWS_PROFILE, web identity, ECS/EC2 role)',
} as const;

export interface KmsTarget {
  keyId: string;
  region?: string;
  endpoint?: string;
}

/** The IAM action an operation needs. */
export const KMS_ACTION: Record<string, string> = {
  DescribeKey: 'kms:DescribeKey',
  GenerateDataKey: 'kms:GenerateDataKey',
  Encrypt: 'kms:Encrypt',
  Decrypt: 'kms:Decrypt',
  ReEncrypt: 'kms:ReEncryptFrom and kms:ReEncryptTo',
};

const THROTTLED = new Set(['ThrottlingException', 'Throttling', 'TooManyRequestsException', 'RequestLimitExceeded']);
const TRANSIENT = new Set(['KMSInternalException', 'DependencyTimeoutException', 'KeyUnavailableException', 'InternalFailure', 'ServiceUnavailable', 'InternalError']);
const CREDENTIALS = new Set([
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'IncompleteSignatureException',
  'MissingAuthenticationTokenException',
  'ExpiredTokenException',
  'InvalidClientTokenId',
  'SignatureDoesNotMatch',
  'CredentialsProviderError',
]);
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'ENETUNREACH', 'EHOSTUNREACH', 'ECONNABORTED']);

interface AwsLike {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function awsOf(err: unknown): AwsLike {
  return (err && typeof err === 'object' ? err : {}) as AwsLike;
}

function networkCode(e: AwsLike): string | undefined {
  if (e.$metadata?.httpStatusCode) return undefined;
  if (e.code && NETWORK_CODES.has(e.code)) return e.code;
  if (e.name === 'TimeoutError' || e.name === 'RequestTimeout') return 'ETIMEDOUT';
  if (e.message === 'socket hang up') return 'ECONNRESET';
  return undefined;
}

export function classifyKms(err: unknown): Classified {
  const e = awsOf(err);
  const net = networkCode(e);
  if (net) return { retryable: net !== 'ENOTFOUND', kind: 'network' };
  const name = e.name ?? '';
  if (THROTTLED.has(name)) return { retryable: true, kind: 'throttled' };
  if (TRANSIENT.has(name) || (e.$metadata?.httpStatusCode ?? 0) >= 500) return { retryable: true, kind: 'server_error' };
  if (name === 'AccessDeniedException') return { retryable: false, kind: 'denied' };
  if (CREDENTIALS.has(name)) return { retryable: false, kind: 'credentials' };
  if (name === 'NotFoundException') return { retryable: false, kind: 'not_found' };
  if (name === 'DisabledException') return { retryable: false, kind: 'disabled' };
  if (name === 'KMSInvalidStateException') return { retryable: false, kind: 'invalid_state' };
  if (/region is missing/i.test(e.message ?? '')) return { retryable: false, kind: 'config' };
  return { retryable: false, kind: 'rejected' };
}

function where(t: KmsTarget): string {
  if (t.endpoint) return `the KMS endpoint ${t.endpoint}`;
  return t.region ? `the ${t.region} KMS endpoint` : 'AWS KMS';
}

/** A message naming what to check, and the failure's kind. `keyLabel` is the ARN when known. */
export function describeKmsFailure(err: unknown, op: string, t: KmsTarget, keyLabel: string, attempts = 1): { kind: string; message: string } {
  const e = awsOf(err);
  const { kind } = classifyKms(err);
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  const said = e.message && e.message !== e.name ? `: ${e.message}` : '';
  switch (kind) {
    case 'network':
      return {
        kind,
        message:
          `cannot reach ${where(t)} for ${op} (${networkCode(e)})${tries}: check ${KMS_SETTING.region}` +
          `${t.endpoint ? ` and ${KMS_SETTING.endpoint}` : ''} and the network path to KMS (VPC endpoint, proxy, security groups)`,
      };
    case 'throttled':
      return {
        kind,
        message:
          `AWS KMS throttled ${op} (${e.name})${tries}: request a higher KMS request quota, or make fewer calls by reusing ` +
          `DEKs longer (kek.dek.max_age_seconds, kek.dek.max_uses) with the DEK cache on (kek.dek.cache_size)`,
      };
    case 'server_error':
      return { kind, message: `AWS KMS failed ${op} (${e.name ?? e.$metadata?.httpStatusCode}${said})${tries}; retry later` };
    case 'denied':
      return {
        kind,
        message:
          `AWS KMS denied ${op} on ${keyLabel} (AccessDeniedException${said}): grant ${KMS_ACTION[op] ?? `kms:${op}`} on that key ` +
          `to the proxy's IAM identity (key policy or IAM policy; with the EncryptionContext purpose=cmek:v1 if the policy has conditions); ` +
          `the key comes from ${KMS_SETTING.keyId}`,
      };
    case 'credentials':
      if (e.name === 'CredentialsProviderError') {
        return { kind, message: `no usable AWS credentials for ${op}${said}: provide them through ${KMS_SETTING.credentials}` };
      }
      return {
        kind,
        message:
          `AWS rejected the request's credentials (${e.name}${said}): check ${KMS_SETTING.credentials} and that ` +
          `${KMS_SETTING.region} is the key's region`,
      };
    case 'not_found':
      return {
        kind,
        message: `KMS key ${keyLabel} not found (NotFoundException${said}): check ${KMS_SETTING.keyId} and ${KMS_SETTING.region}`,
      };
    case 'disabled':
      return {
        kind,
        message:
          `KMS key ${keyLabel} is disabled (DisabledException): enable it (aws kms enable-key) or set ${KMS_SETTING.keyId} ` +
          `to an enabled key; values whose DEK is cached stay readable meanwhile`,
      };
    case 'invalid_state':
      return {
        kind,
        message: `KMS key ${keyLabel} cannot be used in its current state (KMSInvalidStateException${said}): check the key's state (pending deletion? cancel it) or ${KMS_SETTING.keyId}`,
      };
    case 'config':
      return { kind, message: `no AWS region for KMS: set ${KMS_SETTING.region}` };
    default:
      return { kind, message: `AWS KMS rejected ${op} on ${keyLabel} (${e.name ?? 'error'}${said})` };
  }
}
