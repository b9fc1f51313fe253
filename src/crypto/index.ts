// The crypto core's public surface: the keyring for values, the errors callers
// match on, and the pieces the admin tools and docs/FORMAT.md refer to.
export { Keyring, type KeyringOptions, type KeyringStats } from './keyring.js';
export { type ValueDescription } from './keyring-rotation.js';
export { CMEKDecryptionError, KekConfigError, type DecryptionFailureReason } from './errors.js';
export { PREFIX, isEnvelope, parseEnvelope, formatEnvelope, kekIdLabel, backendName } from './envelope.js';
export { FernetKey, FernetError, encrypt as fernetEncrypt, decrypt as fernetDecrypt } from './fernet.js';
export { LocalKekBackend, generateKekFile, readKekFile, kekIdOf } from './kek/local.js';
export { createBackends, configuredBackends } from './kek/registry.js';
export { BackendTag, type KekBackend, type WrappedDek } from './kek/types.js';
