// What a fresh Postgres backend pays to touch a shared-buffer page for the first
// time: a parent maps M MiB of shared anonymous memory and touches every 4 KiB
// page, then forks children (as the postmaster forks backends). Linux does not
// copy a shared mapping's page tables on fork, so each child takes a minor fault
// on its first touch of each page. Each child reads or writes every S-th page
// once and reports the time per page and per fault (getrusage's minflt). A
// sequential read fault maps up to 16 neighbouring pages at once (fault-around);
// a write, or a read of scattered pages, maps one. docs/ARCHITECTURE.md ("Fresh
// backends are slow for seconds") has the figures of the project's VM.
//
//   gcc -O2 -o /tmp/fault-cost bench/fault-cost.c
//   for mode in r w; do for s in 1 37; do /tmp/fault-cost 64 $mode $s; done; done
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static long minor_faults(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_minflt;
}

int main(int argc, char **argv) {
  if (argc != 4 || (argv[2][0] != 'r' && argv[2][0] != 'w')) {
    fprintf(stderr, "usage: fault-cost MiB r|w STRIDE\n");
    return 2;
  }
  size_t pages = (size_t)atoi(argv[1]) * 256;
  int write = argv[2][0] == 'w';
  size_t stride = (size_t)atoi(argv[3]);
  if (pages == 0 || stride == 0) return 2;
  volatile unsigned char *m = mmap(NULL, pages << 12, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  for (size_t i = 0; i < pages; i++) m[i << 12] = 1; // every page exists before the fork
  for (int run = 0; run < 3; run++) {
    pid_t child = fork();
    if (child == 0) {
      unsigned sum = 0;
      size_t touched = 0;
      long f0 = minor_faults();
      double t0 = now_us();
      for (size_t i = 0; i < pages; i += stride, touched++) {
        if (write) m[i << 12] = 2;
        else sum += m[i << 12];
      }
      double t1 = now_us();
      long faults = minor_faults() - f0;
      printf("%s every %zu page(s): %zu pages, %ld faults, %.2f us per page, %.2f us per fault%s\n", write ? "write" : "read", stride,
             touched, faults, (t1 - t0) / touched, faults > 0 ? (t1 - t0) / faults : 0.0, sum == 0 && !write ? " (?)" : "");
      fflush(stdout);
      _exit(0);
    }
    waitpid(child, NULL, 0);
  }
  return 0;
}
