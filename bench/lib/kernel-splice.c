// kernel-splice: the floor of any proxy hop, as a benchmark peer (bench:proxy
// --kernel-splice). A TCP relay whose bytes never reach a process: each client
// socket and its upstream socket go into a BPF sockhash, and an sk_skb verdict
// program redirects every segment received on one to the other's send path, in
// softirq and a kernel worker. No process wakes per message, so what it costs
// above a direct connection is what the extra TCP hop itself costs here.
//
// A measuring device, not a way to run pgcmek: it checks no frame, and a client
// that stops reading makes the kernel queue the server's output without bound
// (2 GB of a 2 GB result were held in kernel memory in the 19th session's test).
// It needs root (CAP_BPF + CAP_NET_ADMIN) and a kernel with CONFIG_BPF_STREAM_PARSER.
//
// Usage: kernel-splice <listen port> <upstream IPv4> <upstream port>
// Prints "listening" once ready, or "unavailable: <reason>" and exits 2.
#define _GNU_SOURCE
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

#define MAX_PAIRS 4096

static int map_fd = -1;

static long sys_bpf(int cmd, union bpf_attr *a) { return syscall(__NR_bpf, cmd, a, sizeof(*a)); }

static void unavailable(const char *what) {
  printf("unavailable: %s: %s\n", what, strerror(errno));
  fflush(stdout);
  exit(2);
}

// The map's key is the socket cookie of the socket a segment arrived on; its
// value is the other socket of the pair. The verdict program is
//   key = bpf_get_socket_cookie(skb); return bpf_sk_redirect_hash(skb, map, &key, 0)
// (flags 0: to the other socket's egress, i.e. send it on).
static void load_bpf(void) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_type = BPF_MAP_TYPE_SOCKHASH;
  a.key_size = 8;
  a.value_size = 4;
  a.max_entries = MAX_PAIRS * 2;
  map_fd = (int)sys_bpf(BPF_MAP_CREATE, &a);
  if (map_fd < 0) unavailable("BPF sockhash");

  struct bpf_insn prog[] = {
    {.code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = 6, .src_reg = 1},             // r6 = skb
    {.code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_get_socket_cookie},               // r0 = cookie(skb->sk)
    {.code = BPF_STX | BPF_MEM | BPF_DW, .dst_reg = 10, .src_reg = 0, .off = -8},  // key on the stack
    {.code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = 1, .src_reg = 6},
    {.code = BPF_LD | BPF_DW | BPF_IMM, .dst_reg = 2, .src_reg = BPF_PSEUDO_MAP_FD, .imm = map_fd},
    {0},
    {.code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = 3, .src_reg = 10},
    {.code = BPF_ALU64 | BPF_ADD | BPF_K, .dst_reg = 3, .imm = -8},
    {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 4, .imm = 0},
    {.code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_sk_redirect_hash},
    {.code = BPF_JMP | BPF_EXIT},
  };
  static char log[16384];
  memset(&a, 0, sizeof a);
  a.prog_type = BPF_PROG_TYPE_SK_SKB;
  a.expected_attach_type = BPF_SK_SKB_VERDICT;
  a.insns = (uintptr_t)prog;
  a.insn_cnt = sizeof prog / sizeof prog[0];
  a.license = (uintptr_t)"GPL";
  a.log_buf = (uintptr_t)log;
  a.log_size = sizeof log;
  a.log_level = 1;
  int prog_fd = (int)sys_bpf(BPF_PROG_LOAD, &a);
  if (prog_fd < 0) unavailable("BPF sk_skb program");
  memset(&a, 0, sizeof a);
  a.target_fd = map_fd;
  a.attach_bpf_fd = prog_fd;
  a.attach_type = BPF_SK_SKB_VERDICT;
  if (sys_bpf(BPF_PROG_ATTACH, &a)) unavailable("BPF attach");
}

static uint64_t cookie(int fd) {
  uint64_t c = 0;
  socklen_t l = sizeof c;
  getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &l);
  return c;
}

static int map_put(uint64_t key, int fd) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  uint32_t v = (uint32_t)fd;
  a.map_fd = map_fd;
  a.key = (uintptr_t)&key;
  a.value = (uintptr_t)&v;
  a.flags = BPF_ANY;
  return (int)sys_bpf(BPF_MAP_UPDATE_ELEM, &a);
}

static void map_del(uint64_t key) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_fd = map_fd;
  a.key = (uintptr_t)&key;
  sys_bpf(BPF_MAP_DELETE_ELEM, &a);
}

struct pair { int c, u; uint64_t kc, ku; int live; uint32_t gen; };
static struct pair pairs[MAX_PAIRS];

static void nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void end_pair(struct pair *p) {
  if (!p->live) return;
  p->live = 0;
  map_del(p->kc);
  map_del(p->ku);
  close(p->c);
  close(p->u);
}

// Bytes that reached a socket before it joined the map sit in its receive queue
// until the next segment arrives, so they are moved by hand. At start-up the
// protocol is strictly one message each way at a time (the client waits for
// the server's answer), so nothing can overtake them.
static void move_queued(int from, int to) {
  char buf[16384];
  ssize_t n;
  while ((n = recv(from, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
    for (ssize_t off = 0; off < n;) {
      ssize_t w = send(to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
      if (w <= 0) return;
      off += w;
    }
  }
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: kernel-splice <listen port> <upstream IPv4> <upstream port>\n");
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  load_bpf();
  struct sockaddr_in up = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
  if (inet_pton(AF_INET, argv[2], &up.sin_addr) != 1) { fprintf(stderr, "bad upstream address\n"); return 1; }
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(l, (struct sockaddr *)&la, sizeof la) || listen(l, 512)) unavailable("listen");
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
  epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
  printf("listening\n");
  fflush(stdout);

  struct epoll_event evs[64];
  for (;;) {
    int n = epoll_wait(ep, evs, 64, -1);
    if (n < 0 && errno == EINTR) continue;
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u64 == UINT64_MAX) {
        int c = accept(l, NULL, NULL);
        if (c < 0) continue;
        int slot = -1;
        for (int k = 0; k < MAX_PAIRS; k++) if (!pairs[k].live) { slot = k; break; }
        int u = socket(AF_INET, SOCK_STREAM, 0);
        if (slot < 0 || connect(u, (struct sockaddr *)&up, sizeof up)) {
          fprintf(stderr, "kernel-splice: %s\n", slot < 0 ? "too many sessions" : strerror(errno));
          close(c);
          close(u);
          continue;
        }
        nodelay(c);
        nodelay(u);
        struct pair *p = &pairs[slot];
        *p = (struct pair){.c = c, .u = u, .kc = cookie(c), .ku = cookie(u), .live = 1, .gen = p->gen + 1};
        // A segment on c goes to u and one on u goes to c.
        if (map_put(p->kc, u) || map_put(p->ku, c)) {
          fprintf(stderr, "kernel-splice: sockhash update: %s\n", strerror(errno));
          end_pair(p);
          continue;
        }
        for (int k = 0; k < 3; k++) {
          move_queued(c, u);
          move_queued(u, c);
          usleep(1000);
        }
        // Only a hang-up wakes this process: EPOLLIN is left out, so data does not.
        // The generation tells a stale event of this slot's previous pair (same batch) from one of this pair.
        struct epoll_event e = {.events = EPOLLRDHUP, .data.u64 = (uint64_t)p->gen << 32 | (uint32_t)slot};
        epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
        epoll_ctl(ep, EPOLL_CTL_ADD, u, &e);
      } else {
        struct pair *p = &pairs[(uint32_t)evs[i].data.u64];
        if (!p->live || p->gen != (uint32_t)(evs[i].data.u64 >> 32)) continue;
        // Give the kernel worker a moment to send what it still holds (a Terminate).
        usleep(2000);
        end_pair(p);
      }
    }
  }
}
