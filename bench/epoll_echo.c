// SPDX-License-Identifier: MIT
// Description: single-threaded level-triggered epoll echo server, the cheapest baseline for bench/.
//
// Usage: epoll_echo [--port N] [--buffer BYTES] [--broken drop|flip|dup|close [--broken-at OFFSET]]
// Prints "listening on 127.0.0.1:PORT" once ready; exits 0 on SIGINT/SIGTERM.
// --broken corrupts every connection's stream once at byte OFFSET (default 1000); it exists only so
// that tests can prove the load generator detects loss, corruption, duplication and early close.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

enum broken_mode { BROKEN_NONE, BROKEN_DROP, BROKEN_FLIP, BROKEN_DUP, BROKEN_CLOSE };

struct conn {
  uint64_t rx_total;   // bytes received so far (for --broken)
  size_t pending_off;  // unsent bytes are buf[pending_off, pending_len)
  size_t pending_len;
  int broken_done;
  unsigned char buf[];  // flexible array: one allocation per connection
};

static struct conn** conns;  // indexed by fd
static size_t max_fds;
static size_t buf_size = 16384;
static enum broken_mode broken = BROKEN_NONE;
static uint64_t broken_at = 1000;

static void die(const char* what) {
  perror(what);
  exit(1);
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  max_fds = (size_t)rl.rlim_cur;
  if (max_fds == 0 || max_fds > (1u << 22)) max_fds = 1u << 22;
}

static void close_conn(int ep, int fd) {
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  free(conns[fd]);
  conns[fd] = NULL;
}

// Applies --broken to the freshly received bytes c->buf[0, *n). Returns 0 to close the connection.
static int corrupt(struct conn* c, size_t* n) {
  uint64_t start = c->rx_total;
  c->rx_total += *n;
  if (broken == BROKEN_NONE || c->broken_done || broken_at < start || broken_at >= c->rx_total)
    return 1;
  c->broken_done = 1;
  size_t i = (size_t)(broken_at - start);
  switch (broken) {
    case BROKEN_DROP:
      memmove(c->buf + i, c->buf + i + 1, *n - i - 1);
      *n -= 1;
      break;
    case BROKEN_FLIP:
      c->buf[i] ^= 0x5a;
      break;
    case BROKEN_DUP:
      if (*n < buf_size) {  // buf has one spare byte: readers ask for buf_size - 1 at most
        memmove(c->buf + i + 1, c->buf + i, *n - i);
        *n += 1;
      }
      break;
    case BROKEN_CLOSE:
      return 0;
    case BROKEN_NONE:
      break;
  }
  return 1;
}

// Writes what is pending; returns -1 on error, 0 if the socket is full, 1 if all was written.
static int flush(int fd, struct conn* c) {
  while (c->pending_off < c->pending_len) {
    ssize_t w = send(fd, c->buf + c->pending_off, c->pending_len - c->pending_off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    c->pending_off += (size_t)w;
  }
  c->pending_off = c->pending_len = 0;
  return 1;
}

static void set_interest(int ep, int fd, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.fd = fd};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0) die("epoll_ctl MOD");
}

static void on_readable(int ep, int fd) {
  struct conn* c = conns[fd];
  // Read until EAGAIN or until a write blocks (level-triggered: we come back for the rest).
  for (int rounds = 0; rounds < 16; ++rounds) {
    ssize_t r = recv(fd, c->buf, buf_size - 1, 0);
    if (r == 0) {
      close_conn(ep, fd);
      return;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      close_conn(ep, fd);
      return;
    }
    size_t n = (size_t)r;
    if (!corrupt(c, &n)) {
      close_conn(ep, fd);
      return;
    }
    c->pending_off = 0;
    c->pending_len = n;
    int st = flush(fd, c);
    if (st < 0) {
      close_conn(ep, fd);
      return;
    }
    if (st == 0) {
      // Backpressure: stop reading until the peer drains what we owe it.
      set_interest(ep, fd, EPOLLOUT);
      return;
    }
    if ((size_t)r < buf_size - 1) return;  // short read: socket is (very likely) empty
  }
}

static void on_writable(int ep, int fd) {
  int st = flush(fd, conns[fd]);
  if (st < 0)
    close_conn(ep, fd);
  else if (st > 0)
    set_interest(ep, fd, EPOLLIN | EPOLLRDHUP);
}

static void usage(void) {
  fprintf(stderr,
          "usage: epoll_echo [--port N] [--buffer BYTES] [--broken drop|flip|dup|close] "
          "[--broken-at OFFSET]\n");
  exit(2);
}

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc) {
      port = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--buffer") && i + 1 < argc) {
      buf_size = (size_t)strtoul(argv[++i], NULL, 10);
      if (buf_size < 2) usage();
    } else if (!strcmp(argv[i], "--broken-at") && i + 1 < argc) {
      broken_at = strtoull(argv[++i], NULL, 10);
    } else if (!strcmp(argv[i], "--broken") && i + 1 < argc) {
      const char* m = argv[++i];
      if (!strcmp(m, "drop"))
        broken = BROKEN_DROP;
      else if (!strcmp(m, "flip"))
        broken = BROKEN_FLIP;
      else if (!strcmp(m, "dup"))
        broken = BROKEN_DUP;
      else if (!strcmp(m, "close"))
        broken = BROKEN_CLOSE;
      else
        usage();
    } else {
      usage();
    }
  }
  raise_nofile();
  conns = calloc(max_fds, sizeof *conns);
  if (!conns) die("calloc");

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) die("sigprocmask");
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) die("signalfd");

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr*)&addr, sizeof addr) < 0) die("bind");
  if (listen(lfd, 4096) < 0) die("listen");
  socklen_t alen = sizeof addr;
  if (getsockname(lfd, (struct sockaddr*)&addr, &alen) < 0) die("getsockname");

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll_ctl listen");
  ev.data.fd = sfd;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) < 0) die("epoll_ctl signalfd");

  printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
  fflush(stdout);

  struct epoll_event events[256];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == sfd) return 0;
      if (fd == lfd) {
        for (int k = 0; k < 64; ++k) {
          int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) break;  // EAGAIN, or EMFILE (level-triggered: retried next turn)
          if ((size_t)cfd >= max_fds) {
            close(cfd);
            continue;
          }
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct conn* c = malloc(sizeof *c + buf_size);
          if (!c) {
            close(cfd);
            continue;
          }
          memset(c, 0, sizeof *c);
          conns[cfd] = c;
          struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = cfd};
          if (epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev) < 0) {
            close(cfd);
            free(c);
            conns[cfd] = NULL;
          }
        }
        continue;
      }
      if (!conns[fd]) continue;  // closed earlier in this batch
      if (events[i].events & EPOLLOUT) {
        on_writable(ep, fd);
      } else if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        on_readable(ep, fd);  // reads the remaining bytes, then sees EOF or the error
      }
    }
  }
}
