// The native relay: a session's steady state in C when nothing in it is ever
// rewritten (no interceptor: an empty `encrypted:` map, plain TCP on both
// sides). It is PgBouncer's sbuf loop on Node's own libuv loop: each socket is
// watched with a uv_poll on a dup of its descriptor; a readable socket is read
// into one buffer, its frame headers are checked (type byte + int32 length,
// never by chunk boundaries) and the bytes are written to the other socket in
// the same callback. No JavaScript runs per message.
//
// Backpressure: what the kernel does not take is kept (one read's worth at
// most) and the source is not read again until it is written. Anything else
// (end of stream, a socket error, a frame length out of range, a stop asked by
// JavaScript) stops the relay and hands JavaScript what it needs to go on with
// Node's sockets: the bytes not yet written, whether each direction ends on a
// frame boundary, and the byte counts. src/proxy/native-relay.ts wraps it.
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_SIZE (64 * 1024)

enum { CLIENT = 0, SERVER = 1 };
enum { R_NONE = 0, R_EOF, R_READ_ERROR, R_WRITE_ERROR, R_BAD_FRAME, R_STOPPED };
static const char *const REASONS[] = {"none", "eof", "read-error", "write-error", "bad-frame", "stopped"};
static const char *const SIDES[] = {"client", "server"};

typedef struct relay relay_t;

typedef struct {
  relay_t *r;
  int fd; /* our dup of the socket's descriptor */
  uv_poll_t poll;
  int events;  /* the events the poll handle watches now */
  int paused;  /* not read: the bytes it sent last are not all written yet */
  /* Framing of the bytes read from this socket (they all go to the other one). */
  uint8_t hdr[5];
  int hdr_n;
  uint32_t body_left;
  int32_t max_frame;
  /* Bytes waiting to be written to this socket. */
  uint8_t *pend;
  size_t pend_len;
  size_t pend_off;
  uint64_t bytes_read;
  uint64_t bytes_written;
} side_t;

struct relay {
  side_t side[2];
  napi_env env;
  napi_ref cb;      /* onStop(result), called once when the relay stops by itself */
  napi_ref self;    /* keeps the external alive while relaying */
  napi_async_context actx;
  int active;
  int open_handles; /* poll handles not closed yet */
  int js_gone;      /* the external was finalized */
  int reason;
  int who;
  int err;
  uint8_t bad_code;
  int32_t bad_len;
};

/* Reads go into one buffer per thread: every read is written out (or copied) before the callback returns. */
static __thread uint8_t rbuf[READ_SIZE];

static void maybe_free(relay_t *r) {
  if (r->open_handles > 0 || !r->js_gone) return;
  for (int i = 0; i < 2; i++) free(r->side[i].pend);
  free(r);
}

static void on_closed(uv_handle_t *h) {
  side_t *s = h->data;
  relay_t *r = s->r;
  close(s->fd);
  s->fd = -1;
  r->open_handles--;
  maybe_free(r);
}

static void on_poll(uv_poll_t *h, int status, int events);

static void watch(side_t *s) {
  int ev = (s->paused ? 0 : UV_READABLE) | (s->pend != NULL ? UV_WRITABLE : 0);
  if (ev == s->events) return;
  s->events = ev;
  if (ev == 0) uv_poll_stop(&s->poll);
  else uv_poll_start(&s->poll, ev, on_poll);
}

/* Stops watching both sockets and closes our descriptors (Node keeps its own). */
static void halt(relay_t *r, int reason, int who, int err) {
  r->active = 0;
  r->reason = reason;
  r->who = who;
  r->err = err;
  for (int i = 0; i < 2; i++) {
    side_t *s = &r->side[i];
    uv_poll_stop(&s->poll);
    s->events = 0;
    uv_close((uv_handle_t *)&s->poll, on_closed);
  }
}

static napi_value num(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static napi_value str(napi_env env, const char *v) {
  napi_value out;
  napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &out);
  return out;
}

static void set(napi_env env, napi_value obj, const char *key, napi_value v) { napi_set_named_property(env, obj, key, v); }

/* What JavaScript needs to carry on: see the header comment. Moves the pending bytes out. */
static napi_value result_of(napi_env env, relay_t *r) {
  napi_value o, t, f;
  napi_create_object(env, &o);
  napi_get_boolean(env, 1, &t);
  napi_get_boolean(env, 0, &f);
  set(env, o, "reason", str(env, REASONS[r->reason]));
  set(env, o, "side", str(env, SIDES[r->who]));
  set(env, o, "errno", str(env, r->err != 0 ? uv_err_name(-r->err) : ""));
  set(env, o, "badCode", num(env, r->bad_code));
  set(env, o, "badLength", num(env, r->bad_len));
  const char *pend_keys[2] = {"toClient", "toServer"};
  const char *bound_keys[2] = {"clientAtBoundary", "serverAtBoundary"};
  for (int i = 0; i < 2; i++) {
    side_t *s = &r->side[i];
    napi_value b;
    if (s->pend != NULL && s->pend_len > s->pend_off) {
      void *data;
      napi_create_buffer_copy(env, s->pend_len - s->pend_off, s->pend + s->pend_off, &data, &b);
    } else {
      napi_get_null(env, &b);
    }
    free(s->pend);
    s->pend = NULL;
    s->pend_len = s->pend_off = 0;
    set(env, o, pend_keys[i], b);
    set(env, o, bound_keys[i], s->hdr_n == 0 && s->body_left == 0 ? t : f);
  }
  set(env, o, "bytesFromClient", num(env, (double)r->side[CLIENT].bytes_read));
  set(env, o, "bytesToClient", num(env, (double)r->side[CLIENT].bytes_written));
  set(env, o, "bytesFromServer", num(env, (double)r->side[SERVER].bytes_read));
  set(env, o, "bytesToServer", num(env, (double)r->side[SERVER].bytes_written));
  return o;
}

/* Drops what tied the stopped relay to JavaScript: its callback, async context and the external's reference. */
static void release(napi_env env, relay_t *r) {
  napi_delete_reference(env, r->cb);
  r->cb = NULL;
  napi_async_destroy(env, r->actx);
  r->actx = NULL;
  napi_delete_reference(env, r->self);
  r->self = NULL;
}

/* The relay stopped by itself: tell JavaScript (once), then let go of it. */
static void finish(relay_t *r, int reason, int who, int err) {
  if (!r->active) return;
  halt(r, reason, who, err);
  napi_env env = r->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, recv, res, ret;
  napi_get_reference_value(env, r->cb, &cb);
  napi_get_global(env, &recv); /* napi_make_callback wants an object as `this` */
  res = result_of(env, r);
  napi_status st = napi_make_callback(env, r->actx, recv, cb, 1, &res, &ret);
  if (st == napi_pending_exception) {
    napi_value e;
    napi_get_and_clear_last_exception(env, &e);
    napi_fatal_exception(env, e);
  }
  napi_close_handle_scope(env, scope);
  release(env, r);
}

static uint32_t be32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }

/*
 * Walks the frame headers in p[0..n). Returns n, or the offset where the bytes
 * that may go out end because a frame length is out of range (the frames
 * before it were whole and valid; a header split across reads has already gone).
 */
static size_t scan(relay_t *r, side_t *s, const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (s->body_left > 0) {
      size_t take = n - i < s->body_left ? n - i : s->body_left;
      i += take;
      s->body_left -= (uint32_t)take;
      continue;
    }
    size_t start = i;
    int32_t len;
    uint8_t code;
    if (s->hdr_n == 0 && n - i >= 5) {
      code = p[i];
      len = (int32_t)be32(p + i + 1);
      i += 5;
    } else {
      s->hdr[s->hdr_n++] = p[i++];
      if (s->hdr_n < 5) continue;
      s->hdr_n = 0;
      code = s->hdr[0];
      len = (int32_t)be32(s->hdr + 1);
      start = i >= 5 ? i - 5 : 0;
    }
    if (len < 4 || len > s->max_frame) {
      r->bad_code = code;
      r->bad_len = len;
      return start;
    }
    s->body_left = (uint32_t)len - 4;
  }
  return n;
}

/* Writes p[0..n) to d; what the kernel does not take waits, and `src` is not read meanwhile. */
static int send_to(relay_t *r, side_t *d, side_t *src, const uint8_t *p, size_t n) {
  if (n == 0) return 1;
  ssize_t w = send(d->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (w < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      finish(r, R_WRITE_ERROR, d == &r->side[CLIENT] ? CLIENT : SERVER, -errno);
      return 0;
    }
    w = 0;
  }
  d->bytes_written += (uint64_t)w;
  if ((size_t)w == n) return 1;
  d->pend = malloc(n - (size_t)w);
  if (d->pend == NULL) {
    finish(r, R_WRITE_ERROR, d == &r->side[CLIENT] ? CLIENT : SERVER, UV_ENOMEM);
    return 0;
  }
  memcpy(d->pend, p + w, n - (size_t)w);
  d->pend_len = n - (size_t)w;
  d->pend_off = 0;
  src->paused = 1;
  watch(src);
  watch(d);
  return 1;
}

/* d is writable: its pending bytes go out; once they all have, the other side is read again. */
static int flush_pending(relay_t *r, side_t *d) {
  if (d->pend == NULL) return 1;
  size_t left = d->pend_len - d->pend_off;
  ssize_t w = send(d->fd, d->pend + d->pend_off, left, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (w < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 1;
    finish(r, R_WRITE_ERROR, d == &r->side[CLIENT] ? CLIENT : SERVER, -errno);
    return 0;
  }
  d->bytes_written += (uint64_t)w;
  d->pend_off += (size_t)w;
  if (d->pend_off < d->pend_len) return 1;
  free(d->pend);
  d->pend = NULL;
  d->pend_len = d->pend_off = 0;
  side_t *src = d == &r->side[CLIENT] ? &r->side[SERVER] : &r->side[CLIENT];
  src->paused = 0;
  watch(d);
  watch(src);
  return 1;
}

static void read_side(relay_t *r, side_t *s) {
  int who = s == &r->side[CLIENT] ? CLIENT : SERVER;
  side_t *d = &r->side[1 - who];
  ssize_t n = recv(s->fd, rbuf, READ_SIZE, MSG_DONTWAIT);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    finish(r, R_READ_ERROR, who, -errno);
    return;
  }
  if (n == 0) {
    finish(r, R_EOF, who, 0);
    return;
  }
  s->bytes_read += (uint64_t)n;
  size_t ok = scan(r, s, rbuf, (size_t)n);
  if (!send_to(r, d, s, rbuf, ok)) return;
  if (ok < (size_t)n) finish(r, R_BAD_FRAME, who, 0);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  side_t *s = h->data;
  relay_t *r = s->r;
  if (!r->active) return;
  if (status < 0) {
    // libuv reports a socket error as EBADF: the socket knows the real one.
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr == 0) soerr = -status;
    finish(r, R_READ_ERROR, s == &r->side[CLIENT] ? CLIENT : SERVER, -soerr);
    return;
  }
  if ((events & UV_WRITABLE) && !flush_pending(r, s)) return;
  if ((events & UV_READABLE) && r->active && !s->paused) read_side(r, s);
}

static void finalize(napi_env env, void *data, void *hint) {
  relay_t *r = data;
  r->js_gone = 1;
  maybe_free(r);
}

#define CHECK(call)                                    \
  do {                                                 \
    if ((call) != napi_ok) {                           \
      napi_throw_error(env, NULL, "relay: " #call);    \
      return NULL;                                     \
    }                                                  \
  } while (0)

static int int_arg(napi_env env, napi_value v, int64_t lo, int64_t hi, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d != (double)(int64_t)d || d < (double)lo || d > (double)hi) return 0;
  *out = (int64_t)d;
  return 1;
}

/* relayStart(clientFd, serverFd, maxClientFrame, maxServerFrame, onStop) → handle */
static napi_value relay_start(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t fds[2], max[2];
  napi_valuetype t;
  if (argc < 5 || !int_arg(env, argv[0], 0, INT32_MAX, &fds[0]) || !int_arg(env, argv[1], 0, INT32_MAX, &fds[1]) ||
      !int_arg(env, argv[2], 4, INT32_MAX, &max[0]) || !int_arg(env, argv[3], 4, INT32_MAX, &max[1]) ||
      napi_typeof(env, argv[4], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, NULL, "relayStart(clientFd, serverFd, maxClientFrame, maxServerFrame, onStop)");
    return NULL;
  }
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  relay_t *r = calloc(1, sizeof *r);
  if (r == NULL) {
    napi_throw_error(env, NULL, "relay: out of memory");
    return NULL;
  }
  int dups[2] = {-1, -1};
  for (int i = 0; i < 2; i++) {
    dups[i] = fcntl((int)fds[i], F_DUPFD_CLOEXEC, 0);
    int rc = dups[i] < 0 ? -errno : uv_poll_init_socket(loop, &r->side[i].poll, dups[i]);
    if (rc != 0) {
      for (int j = 0; j <= i; j++)
        if (dups[j] >= 0) close(dups[j]);
      // A poll handle that was initialised must be closed through the loop: only the first can be.
      if (i == 1) {
        r->js_gone = 1;
        r->open_handles = 1;
        r->side[0].r = r;
        r->side[0].fd = -1;
        r->side[0].poll.data = &r->side[0];
        uv_close((uv_handle_t *)&r->side[0].poll, on_closed);
      } else {
        free(r);
      }
      napi_throw_error(env, uv_err_name(rc), "relay: cannot watch the socket");
      return NULL;
    }
  }
  r->env = env;
  r->active = 1;
  r->open_handles = 2;
  for (int i = 0; i < 2; i++) {
    side_t *s = &r->side[i];
    s->r = r;
    s->fd = dups[i];
    s->max_frame = (int32_t)max[i];
    s->poll.data = s;
  }
  napi_value ext, name;
  CHECK(napi_create_reference(env, argv[4], 1, &r->cb));
  CHECK(napi_create_string_utf8(env, "pgcmek.relay", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &r->actx));
  CHECK(napi_create_external(env, r, finalize, NULL, &ext));
  CHECK(napi_create_reference(env, ext, 1, &r->self));
  for (int i = 0; i < 2; i++) watch(&r->side[i]);
  return ext;
}

static relay_t *relay_of(napi_env env, napi_callback_info info, napi_value *rest, size_t nrest) {
  size_t argc = 1 + nrest;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 + nrest) return NULL;
  void *p = NULL;
  napi_valuetype t;
  if (napi_typeof(env, argv[0], &t) != napi_ok || t != napi_external || napi_get_value_external(env, argv[0], &p) != napi_ok) return NULL;
  for (size_t i = 0; i < nrest; i++) rest[i] = argv[1 + i];
  return p;
}

/* relayStop(handle) → the result (as given to onStop, reason "stopped"), or null when it had stopped already. */
static napi_value relay_stop(napi_env env, napi_callback_info info) {
  relay_t *r = relay_of(env, info, NULL, 0);
  if (r == NULL) {
    napi_throw_type_error(env, NULL, "relayStop(handle)");
    return NULL;
  }
  napi_value out;
  if (!r->active) {
    napi_get_null(env, &out);
    return out;
  }
  halt(r, R_STOPPED, CLIENT, 0);
  out = result_of(env, r);
  release(env, r);
  return out;
}

/* relayCounts(handle, Float64Array(4)): bytes from client, to client, from server, to server. */
static napi_value relay_counts(napi_env env, napi_callback_info info) {
  napi_value rest[1];
  relay_t *r = relay_of(env, info, rest, 1);
  napi_typedarray_type tt;
  size_t len;
  void *data;
  if (r == NULL || napi_get_typedarray_info(env, rest[0], &tt, &len, &data, NULL, NULL) != napi_ok || tt != napi_float64_array || len < 4) {
    napi_throw_type_error(env, NULL, "relayCounts(handle, Float64Array(4))");
    return NULL;
  }
  double *o = data;
  o[0] = (double)r->side[CLIENT].bytes_read;
  o[1] = (double)r->side[CLIENT].bytes_written;
  o[2] = (double)r->side[SERVER].bytes_read;
  o[3] = (double)r->side[SERVER].bytes_written;
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"relayStart", NULL, relay_start, NULL, NULL, NULL, napi_default, NULL},
      {"relayStop", NULL, relay_stop, NULL, NULL, NULL, napi_default, NULL},
      {"relayCounts", NULL, relay_counts, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
