# The optional native addons, crypto (native/crypto.c) and the relay (native/relay.c): built by `npm ci` through
# scripts/build-native.cjs; src/crypto/native.ts loads it when present.
{
  "targets": [
    {
      "target_name": "pgcmek_crypto",
      "sources": ["native/crypto.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "pgcmek_relay",
      "sources": ["native/relay.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
