// What touching memory costs right after a context switch on this machine: two
// processes take turns over a pair of pipes, and each touches K random 4 KiB
// pages of a shared mapping of M MiB in its turn (as Postgres backends touch
// shared buffers between a proxy's messages). The time per round trip with K
// touches, minus K = 0, is what those touches cost; compare a small mapping with
// a large one. docs/ARCHITECTURE.md ("What the bigger encrypted index costs
// Postgres") has the figures of the project's VM.
//
//   gcc -O2 -o /tmp/page-touch bench/page-touch.c
//   for run in 1 2 3; do for mb in 4 64 256; do for k in 0 5 20; do /tmp/page-touch $mb $k 30000; done; done; done
// (take each configuration's fastest run: the machine's other load only slows one down)
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// K pseudo-random page touches (an LCG: no library call between touches).
static unsigned touch(volatile unsigned char *m, size_t pages, int k, unsigned *seed) {
  unsigned x = 0;
  for (int i = 0; i < k; i++) {
    *seed = *seed * 1103515245u + 12345u;
    x += m[((*seed >> 8) % pages) << 12];
  }
  return x;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s MiB touches-per-turn round-trips\n", argv[0]);
    return 2;
  }
  size_t size = (size_t)atoi(argv[1]) << 20, pages = size >> 12;
  int k = atoi(argv[2]), n = atoi(argv[3]);
  volatile unsigned char *m = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return 1;
  int ping[2], pong[2];
  if (pipe(ping) || pipe(pong)) return 1;
  char c = 0;
  unsigned x = 0;
  pid_t child = fork();
  unsigned seed = child ? 1 : 2;
  // Each process maps every page before the timing starts: a fork does not copy a
  // shared mapping's page tables, and first-touch faults are not what is measured.
  for (size_t i = 0; i < size; i += 4096) m[i] = 1;
  if (child == 0) {
    if (write(pong[1], &c, 1) != 1) _exit(1); // ready
    for (int i = 0; i < n; i++) {
      if (read(ping[0], &c, 1) != 1) _exit(1);
      x += touch(m, pages, k, &seed);
      if (write(pong[1], &c, 1) != 1) _exit(1);
    }
    _exit(x & 1);
  }
  if (read(pong[0], &c, 1) != 1) return 1; // the child has mapped its pages
  double t0 = now();
  for (int i = 0; i < n; i++) {
    if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1) return 1;
    x += touch(m, pages, k, &seed);
  }
  double t = now() - t0;
  wait(0);
  printf("%zu MiB, %d touches per turn: %.2f µs per round trip (%u)\n", size >> 20, k, t / n * 1e6, x & 1);
  return 0;
}
