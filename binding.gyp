# The optional native crypto addon (native/crypto.c): built by `npm ci` through
# scripts/build-native.cjs; src/crypto/native.ts loads it when present.
{
  "targets": [
    {
      "target_name": "pgcmek_crypto",
      "sources": ["native/crypto.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
