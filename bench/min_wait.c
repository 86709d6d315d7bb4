// SPDX-License-Identifier: MIT
// Description: does a recv completion end io_uring's min_wait_usec (Linux 6.12) wait on a
// DEFER_TASKRUN ring? Prints how long waits took (issue 14, README "Batched wake-ups").
//
// Usage: bench/min_wait [min_wait_us] [timeout_us] [wait_nr]   (defaults 10000 200000 64;
// timeout_us 0: no overall timeout)
// Each case arms one recv on a socketpair, lets a second thread write after a delay, and times
// one io_uring_enter(GETEVENTS | EXT_ARG) with wait_nr, the overall timeout and min_wait_usec.
// The documented contract: wait up to min_wait for wait_nr completions; once it has passed,
// return as soon as there is at least one; at the overall timeout at the latest.
#define _GNU_SOURCE
#include <liburing.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)
#endif

// io_uring_getevents_arg of Linux 6.12: liburing 2.3's "pad" became min_wait_usec.
struct getevents_arg_612 {
  uint64_t sigmask;
  uint32_t sigmask_sz;
  uint32_t min_wait_usec;
  uint64_t ts;
};

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

struct writer {
  int fd;
  long delay_us;  // < 0: never write
};

static void* write_later(void* p) {
  const struct writer* w = p;
  if (w->delay_us < 0) return NULL;
  usleep((useconds_t)w->delay_us);
  char c = 'x';
  if (write(w->fd, &c, 1) != 1) perror("write");
  return NULL;
}

// One case: returns the wait's duration in µs and the number of CQEs it left in the CQ.
static double one_case(unsigned setup_flags, long delay_us, unsigned min_wait_us,
                       unsigned timeout_us, unsigned wait_nr, unsigned* cqes, int* ret_out) {
  struct io_uring ring;
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  p.flags = setup_flags;
  int r = io_uring_queue_init_params(8, &ring, &p);
  if (r < 0) {
    fprintf(stderr, "queue_init: %s\n", strerror(-r));
    exit(2);
  }
  if (!(p.features & IORING_FEAT_MIN_TIMEOUT)) {
    fprintf(stderr, "kernel without IORING_FEAT_MIN_TIMEOUT (6.12+)\n");
    exit(77);
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
    perror("socketpair");
    exit(2);
  }
  static char buf[16];
  struct io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_recv(sqe, sv[0], buf, sizeof buf, 0);
  io_uring_submit(&ring);
  struct writer w = {sv[1], delay_us};
  pthread_t t;
  pthread_create(&t, NULL, write_later, &w);
  struct __kernel_timespec ts = {timeout_us / 1000000, (long long)(timeout_us % 1000000) * 1000};
  // timeout_us 0: no overall timeout (then only cases whose data comes are run).
  struct getevents_arg_612 arg = {0, _NSIG / 8, min_wait_us,
                                  timeout_us ? (uint64_t)(uintptr_t)&ts : 0};
  const double t0 = now_us();
  r = (int)syscall(__NR_io_uring_enter, ring.ring_fd, 0, wait_nr,
                   IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
  const double took = now_us() - t0;
  *ret_out = r < 0 ? -errno : r;
  *cqes = io_uring_cq_ready(&ring);
  pthread_join(t, NULL);
  close(sv[0]);
  close(sv[1]);
  io_uring_queue_exit(&ring);
  return took;
}

int main(int argc, char** argv) {
  const unsigned min_wait = argc > 1 ? (unsigned)atoi(argv[1]) : 10000;
  const unsigned timeout = argc > 2 ? (unsigned)atoi(argv[2]) : 200000;
  const unsigned wait_nr = argc > 3 ? (unsigned)atoi(argv[3]) : 64;
  const struct {
    const char* name;
    unsigned flags;
  } setups[] = {
      {"DEFER_TASKRUN", IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN},
      {"COOP_TASKRUN", IORING_SETUP_COOP_TASKRUN},
      {"plain", 0},
  };
  const long delays[] = {1000, (long)min_wait * 2, -1};
  printf("min_wait_usec=%u timeout=%u us wait_nr=%u\n", min_wait, timeout, wait_nr);
  printf(
      "| ring | recv data after | wait took | CQEs | enter returned "
      "|\n|---|---:|---:|---:|---:|\n");
  for (size_t s = 0; s < sizeof setups / sizeof setups[0]; ++s)
    for (size_t d = 0; d < sizeof delays / sizeof delays[0]; ++d) {
      if (delays[d] < 0 && timeout == 0) continue;  // would wait for ever
      unsigned cqes = 0;
      int ret = 0;
      const double took =
          one_case(setups[s].flags, delays[d], min_wait, timeout, wait_nr, &cqes, &ret);
      char when[32];
      if (delays[d] < 0)
        snprintf(when, sizeof when, "never");
      else
        snprintf(when, sizeof when, "%ld us", delays[d]);
      printf("| %s | %s | %.0f us | %u | %d |\n", setups[s].name, when, took, cqes, ret);
    }
  return 0;
}
