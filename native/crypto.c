// pgcmek's per-value crypto primitives as a Node-API addon: HMAC-SHA256 under a
// fixed key and AES-128-CBC over whole blocks, both on the OpenSSL that Node
// itself carries (its symbols are resolved from the running node binary, so
// there is no second copy of OpenSSL and no new crypto code: only calls).
//
// Why: node:crypto's object model costs ~1.3 µs per call on short inputs (a new
// Hmac or output Buffer per call, allocated from C++), against ~0.1 µs for the
// AES or SHA-256 work itself on AES-NI/SHA-NI. A Fernet token makes three such
// calls. Here every output goes into a buffer the caller owns and the key
// states live in C for the key's lifetime: ~0.15–0.2 µs per call, and a new
// token is one call (fernetSeal).
//
// Safety: every offset and length from JS is checked against the buffer it
// indexes before any byte is touched; key material is cleansed on destroy()
// and in the finaliser; nothing is logged. The JS side (src/crypto/native.ts)
// self-tests these functions against node:crypto before using them and falls
// back to its own implementations when the addon is missing or disagrees.
#define NAPI_VERSION 8
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// SHA256_Init/Update/Final are deprecated in OpenSSL 3 in favour of EVP_MD,
// whose context copy allocates: the precomputed-pad HMAC (RFC 2104 §4) needs a
// plain struct copy. They remain exported by 3.x and use SHA-NI when present.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

// Each key starts with its kind, so a key of the other kind passed from JS is refused, not misread.
#define HMAC_KIND 0x686d6163u  // "hmac"
#define AES_KIND 0x61657331u   // "aes1"

typedef struct {
  uint32_t kind;
  SHA256_CTX inner;  // state after the key's ipad block
  SHA256_CTX outer;  // state after the key's opad block
  int live;
} hmac_key;

typedef struct {
  uint32_t kind;
  EVP_CIPHER_CTX *enc;
  EVP_CIPHER_CTX *dec;
} aes_key;

#define CHECK(env, call)                                            \
  do {                                                              \
    if ((call) != napi_ok) {                                        \
      napi_throw_error((env), NULL, "pgcmek native: bad argument"); \
      return NULL;                                                  \
    }                                                               \
  } while (0)

static void hmac_clear(hmac_key *k) {
  OPENSSL_cleanse(k, sizeof *k);
}

static void aes_clear(aes_key *k) {
  // EVP_CIPHER_CTX_free cleanses the key schedule.
  if (k->enc) EVP_CIPHER_CTX_free(k->enc);
  if (k->dec) EVP_CIPHER_CTX_free(k->dec);
  k->enc = NULL;
  k->dec = NULL;
}

// The hint of a wrapped key is the memory it was reported to V8 with (wrap_key), so
// the garbage collector sees keys' native memory and the finaliser gives it back.
static void unreport(napi_env env, void *hint) {
  int64_t left;
  if (hint) napi_adjust_external_memory(env, -(int64_t)(uintptr_t)hint, &left);
}

static void hmac_finalize(napi_env env, void *data, void *hint) {
  unreport(env, hint);
  hmac_clear(data);
  free(data);
}

static void aes_finalize(napi_env env, void *data, void *hint) {
  unreport(env, hint);
  aes_clear(data);
  free(data);
}

/** What an aes_key holds in OpenSSL (two contexts with their key schedules), roughly. */
#define AES_KEY_BYTES 1024

/** The bytes of a Uint8Array (a Buffer is one). */
static int bytes_of(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  void *p;
  if (napi_get_typedarray_info(env, v, &type, len, &p, &ab, &offset) != napi_ok) return 0;
  if (type != napi_uint8_array) return 0;
  *data = p;
  return 1;
}

/** An integer in [0, 2^32): anything else (-1, 1.5, NaN) is refused, not wrapped. */
static int u32_of(napi_env env, napi_value v, uint32_t *out) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (!(d >= 0 && d <= 4294967295.0) || d != (double)(uint32_t)d) return 0;
  *out = (uint32_t)d;
  return 1;
}

/** [at, at + len) lies inside a buffer of `size` bytes. */
static int in_range(size_t size, uint32_t at, uint32_t len) {
  return (size_t)at <= size && (size_t)len <= size - at;
}

static napi_value range_error(napi_env env, const char *what) {
  napi_throw_range_error(env, NULL, what);
  return NULL;
}

/** The HMAC key in an External, or NULL (not one of ours, or destroyed: its state was cleansed, kind included). */
static hmac_key *hmac_of(napi_env env, napi_value v) {
  hmac_key *k;
  if (napi_get_value_external(env, v, (void **)&k) != napi_ok || k == NULL || k->kind != HMAC_KIND || !k->live) return NULL;
  return k;
}

/** The AES key in an External, or NULL (not one of ours, or destroyed). */
static aes_key *aes_of(napi_env env, napi_value v) {
  aes_key *k;
  if (napi_get_value_external(env, v, (void **)&k) != napi_ok || k == NULL || k->kind != AES_KIND || !k->enc) return NULL;
  return k;
}

/** HMAC-SHA256 of data[0, len) into out[0, 32) from the key's pad states. */
static int hmac_compute(const hmac_key *k, const uint8_t *data, size_t len, uint8_t *out) {
  SHA256_CTX c = k->inner;
  uint8_t digest[32];
  int ok = SHA256_Update(&c, data, len) && SHA256_Final(digest, &c);
  c = k->outer;
  ok = ok && SHA256_Update(&c, digest, sizeof digest) && SHA256_Final(out, &c);
  OPENSSL_cleanse(&c, sizeof c);
  OPENSSL_cleanse(digest, sizeof digest);
  return ok;
}

/** The key wrapped for JS; when it is not `ok` or cannot be wrapped, cleansed, freed and a RangeError thrown. */
static napi_value wrap_key(napi_env env, void *k, size_t bytes, napi_finalize finalize, int ok, const char *what) {
  napi_value ext;
  int64_t total;
  if (ok && napi_create_external(env, k, finalize, (void *)(uintptr_t)bytes, &ext) == napi_ok) {
    napi_adjust_external_memory(env, (int64_t)bytes, &total);
    return ext;
  }
  finalize(env, k, NULL);
  return range_error(env, what);
}

// hmacKey(key: Uint8Array): External — the pad states of an HMAC-SHA256 key.
static napi_value hmac_key_new(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *key;
  size_t len;
  if (argc < 1 || !bytes_of(env, argv[0], &key, &len)) return range_error(env, "hmacKey: key must be a Uint8Array");
  uint8_t block[64] = {0};
  if (len > 64) {
    if (!SHA256(key, len, block)) return range_error(env, "hmacKey: SHA-256 failed");
  } else {
    memcpy(block, key, len);
  }
  hmac_key *k = calloc(1, sizeof *k);
  if (!k) return range_error(env, "hmacKey: out of memory");
  uint8_t pad[64];
  for (int i = 0; i < 64; i++) pad[i] = block[i] ^ 0x36;
  int ok = SHA256_Init(&k->inner) && SHA256_Update(&k->inner, pad, 64);
  for (int i = 0; i < 64; i++) pad[i] = block[i] ^ 0x5c;
  ok = ok && SHA256_Init(&k->outer) && SHA256_Update(&k->outer, pad, 64);
  OPENSSL_cleanse(block, sizeof block);
  OPENSSL_cleanse(pad, sizeof pad);
  k->live = ok;
  k->kind = HMAC_KIND;
  return wrap_key(env, k, sizeof *k, hmac_finalize, ok, "hmacKey: SHA-256 failed or the key cannot be wrapped");
}

// hmacInto(k, src, start, end, out, at): HMAC of src[start, end) into out[at, at + 32).
static napi_value hmac_into(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *src, *out;
  size_t slen, olen;
  uint32_t start, end, at;
  if (argc < 6 || !bytes_of(env, argv[1], &src, &slen) || !u32_of(env, argv[2], &start) || !u32_of(env, argv[3], &end) ||
      !bytes_of(env, argv[4], &out, &olen) || !u32_of(env, argv[5], &at))
    return range_error(env, "hmacInto: bad arguments");
  hmac_key *k = hmac_of(env, argv[0]);
  if (!k) return range_error(env, "hmacInto: not an HMAC key, or the key was destroyed");
  if (end < start || !in_range(slen, start, end - start) || !in_range(olen, at, 32)) return range_error(env, "hmacInto: range outside its buffer");
  if (!hmac_compute(k, src + start, end - start, out + at)) return range_error(env, "hmacInto: SHA-256 failed");
  return NULL;
}

/** The one argument of a call: an External, or NULL with a RangeError thrown. */
static void *only_external(napi_env env, napi_callback_info info, const char *what) {
  size_t argc = 1;
  napi_value argv[1];
  void *k;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_external(env, argv[0], &k) != napi_ok) {
    range_error(env, what);
    return NULL;
  }
  return k;
}

// hmacDestroy(k): cleanse the pad states now (the finaliser frees the memory later).
static napi_value hmac_destroy(napi_env env, napi_callback_info info) {
  hmac_key *k = only_external(env, info, "hmacDestroy: bad arguments");
  if (!k) return NULL;
  if (k->kind == HMAC_KIND) hmac_clear(k);  // cleansed, kind included: a second destroy finds 0 and does nothing
  else if (k->kind != 0) return range_error(env, "hmacDestroy: not an HMAC key");
  return NULL;
}

// aesKey(key: 16 bytes): External — an AES-128-CBC encrypt and decrypt context, no padding.
static napi_value aes_key_new(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *key;
  size_t len;
  if (argc < 1 || !bytes_of(env, argv[0], &key, &len) || len != 16) return range_error(env, "aesKey: the key must be 16 bytes");
  aes_key *k = calloc(1, sizeof *k);
  if (!k) return range_error(env, "aesKey: out of memory");
  k->kind = AES_KIND;
  static const uint8_t zero_iv[16];
  k->enc = EVP_CIPHER_CTX_new();
  k->dec = EVP_CIPHER_CTX_new();
  int ok = k->enc && k->dec && EVP_EncryptInit_ex(k->enc, EVP_aes_128_cbc(), NULL, key, zero_iv) == 1 &&
           EVP_CIPHER_CTX_set_padding(k->enc, 0) == 1 && EVP_DecryptInit_ex(k->dec, EVP_aes_128_cbc(), NULL, key, zero_iv) == 1 &&
           EVP_CIPHER_CTX_set_padding(k->dec, 0) == 1;
  return wrap_key(env, k, sizeof *k + AES_KEY_BYTES, aes_finalize, ok, "aesKey: OpenSSL refused the key or the key cannot be wrapped");
}

// cbc(k, decrypt, src, srcAt, len, iv, ivAt, dst, dstAt): AES-128-CBC of whole blocks
// src[srcAt, srcAt + len) into dst[dstAt, …) under iv[ivAt, ivAt + 16). src and dst
// may be the same range (in place), never overlapping otherwise.
static napi_value cbc(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool decrypt;
  uint8_t *src, *iv, *dst;
  size_t slen, ivlen, dlen;
  uint32_t src_at, len, iv_at, dst_at;
  if (argc < 9 || napi_get_value_bool(env, argv[1], &decrypt) != napi_ok ||
      !bytes_of(env, argv[2], &src, &slen) || !u32_of(env, argv[3], &src_at) || !u32_of(env, argv[4], &len) ||
      !bytes_of(env, argv[5], &iv, &ivlen) || !u32_of(env, argv[6], &iv_at) || !bytes_of(env, argv[7], &dst, &dlen) ||
      !u32_of(env, argv[8], &dst_at))
    return range_error(env, "cbc: bad arguments");
  aes_key *k = aes_of(env, argv[0]);
  if (!k) return range_error(env, "cbc: not an AES key, or the key was destroyed");
  EVP_CIPHER_CTX *c = decrypt ? k->dec : k->enc;
  if (len % 16 != 0 || len > INT32_MAX) return range_error(env, "cbc: not a whole number of blocks");
  if (!in_range(slen, src_at, len) || !in_range(dlen, dst_at, len) || !in_range(ivlen, iv_at, 16)) return range_error(env, "cbc: range outside its buffer");
  const uint8_t *in = src + src_at;
  uint8_t *out = dst + dst_at;
  if (in != out && in < out + len && out < in + len) return range_error(env, "cbc: overlapping ranges");
  // A fresh IV on the kept key schedule; no padding, so update() emits exactly len bytes.
  uint8_t ivc[16];
  memcpy(ivc, iv + iv_at, 16);  // iv may lie inside the output range
  int n = 0;
  int ok = (decrypt ? EVP_DecryptInit_ex(c, NULL, NULL, NULL, ivc) : EVP_EncryptInit_ex(c, NULL, NULL, NULL, ivc)) == 1 &&
           (decrypt ? EVP_DecryptUpdate(c, out, &n, in, (int)len) : EVP_EncryptUpdate(c, out, &n, in, (int)len)) == 1 && n == (int)len;
  if (!ok) return range_error(env, "cbc: OpenSSL failed");
  return NULL;
}

// fernetSeal(mac, aes, src, start, end, iv, ivAt, tsHi, tsLo, out, at): the raw Fernet
// token of src[start, end) into out[at, at + 57 + ctLen) (ctLen: the plaintext padded
// to whole blocks, PKCS7): 0x80, the 64-bit timestamp tsHi:tsLo, the IV
// iv[ivAt, ivAt + 16), AES-128-CBC of the padded plaintext, HMAC-SHA256 of all that.
// One call for what otherwise takes three and the JS between them. The IV may lie
// anywhere (it is copied first); the plaintext must not overlap the output.
static napi_value fernet_seal(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *src, *iv, *dst;
  size_t slen, ivlen, dlen;
  uint32_t start, end, iv_at, ts_hi, ts_lo, at;
  if (argc < 11 || !bytes_of(env, argv[2], &src, &slen) || !u32_of(env, argv[3], &start) || !u32_of(env, argv[4], &end) || !bytes_of(env, argv[5], &iv, &ivlen) ||
      !u32_of(env, argv[6], &iv_at) || !u32_of(env, argv[7], &ts_hi) || !u32_of(env, argv[8], &ts_lo) || !bytes_of(env, argv[9], &dst, &dlen) ||
      !u32_of(env, argv[10], &at))
    return range_error(env, "fernetSeal: bad arguments");
  hmac_key *m = hmac_of(env, argv[0]);
  aes_key *k = aes_of(env, argv[1]);
  if (!m || !k) return range_error(env, "fernetSeal: not an HMAC and an AES key, or a key was destroyed");
  if (end < start || !in_range(slen, start, end - start) || !in_range(ivlen, iv_at, 16)) return range_error(env, "fernetSeal: range outside its buffer");
  size_t n = end - start;
  size_t full = n - n % 16;
  size_t ct_len = full + 16;
  if (ct_len > INT32_MAX - 57 || !in_range(dlen, at, (uint32_t)(57 + ct_len))) return range_error(env, "fernetSeal: range outside its buffer");
  const uint8_t *pt = src + start;
  uint8_t *out = dst + at;
  if (n > 0 && pt < out + 57 + ct_len && out < pt + n) return range_error(env, "fernetSeal: overlapping ranges");
  uint8_t ivc[16];
  memcpy(ivc, iv + iv_at, 16);
  out[0] = 0x80;
  for (int i = 0; i < 4; i++) {
    out[1 + i] = (uint8_t)(ts_hi >> (24 - 8 * i));
    out[5 + i] = (uint8_t)(ts_lo >> (24 - 8 * i));
  }
  memcpy(out + 9, ivc, 16);
  // The last block is the plaintext's tail and its padding, built here and cleansed.
  uint8_t last[16];
  memcpy(last, pt + full, n - full);
  memset(last + (n - full), (int)(16 - (n - full)), 16 - (n - full));
  int l1 = 0, l2 = 0;
  int ok = EVP_EncryptInit_ex(k->enc, NULL, NULL, NULL, ivc) == 1 && (full == 0 || EVP_EncryptUpdate(k->enc, out + 25, &l1, pt, (int)full) == 1) &&
           EVP_EncryptUpdate(k->enc, out + 25 + full, &l2, last, 16) == 1 && (size_t)l1 == full && l2 == 16;
  OPENSSL_cleanse(last, sizeof last);
  if (!ok) {
    OPENSSL_cleanse(out + 25, ct_len);
    return range_error(env, "fernetSeal: OpenSSL failed");
  }
  if (!hmac_compute(m, out, 25 + ct_len, out + 25 + ct_len)) return range_error(env, "fernetSeal: SHA-256 failed");
  return NULL;
}

// aesDestroy(k): free both contexts now (their key schedules are cleansed).
static napi_value aes_destroy(napi_env env, napi_callback_info info) {
  aes_key *k = only_external(env, info, "aesDestroy: bad arguments");
  if (!k) return NULL;
  if (k->kind != AES_KIND) return range_error(env, "aesDestroy: not an AES key");
  aes_clear(k);
  return NULL;
}

static napi_value openssl_version(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  CHECK(env, napi_create_string_utf8(env, OpenSSL_version(OPENSSL_VERSION), NAPI_AUTO_LENGTH, &v));
  return v;
}

#define FN(name, fn) {name, 0, fn, 0, 0, 0, napi_default, 0}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor d[] = {
      FN("hmacKey", hmac_key_new), FN("hmacInto", hmac_into), FN("hmacDestroy", hmac_destroy), FN("aesKey", aes_key_new),
      FN("cbc", cbc),              FN("aesDestroy", aes_destroy), FN("fernetSeal", fernet_seal), FN("opensslVersion", openssl_version),
  };
  if (napi_define_properties(env, exports, sizeof d / sizeof d[0], d) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
