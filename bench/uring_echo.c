// SPDX-License-Identifier: MIT
// Description: raw liburing echo server, the "close to the limit" baseline for bench/.
//
// Usage: uring_echo [--port N] [--buffers COUNT] [--buffer-size BYTES] [--max-held N]
// Prints "listening on 127.0.0.1:PORT" once ready; exits 0 on SIGINT/SIGTERM.
//
// Design: multishot accept; per connection one multishot recv that picks buffers from one
// provided-buffer ring (set up by hand: liburing 2.3 has no io_uring_setup_buf_ring); every
// received buffer is echoed with IORING_OP_SEND straight out of the ring buffer and returned to
// the ring when that send completes. One io_uring_submit_and_wait per loop turn, CQEs reaped in
// batches, buffer returns published with one io_uring_buf_ring_advance per turn.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

// user_data layout: [63:56] kind, [55:32] buffer id, [31:0] fd. 0 is reserved for ignored CQEs.
enum kind { K_IGNORE = 0, K_ACCEPT = 1, K_RECV = 2, K_SEND = 3, K_SIGNAL = 4, K_TIMER = 5 };

static inline uint64_t ud(enum kind k, uint32_t bid, int fd) {
  return ((uint64_t)k << 56) | ((uint64_t)(bid & 0xffffff) << 32) | (uint32_t)fd;
}

#define NO_BUF 0xffffffffu

struct conn {
  uint32_t head, tail;  // FIFO of buffer ids waiting to be sent (linked through buf_next)
  uint32_t held;        // ring buffers this connection holds (queued or in flight)
  uint32_t inflight;    // ops in flight that name this fd (recv + send + cancel)
  uint8_t open;         // slot in use
  uint8_t recv_armed;   // a multishot recv is armed (until its CQE without F_MORE)
  uint8_t sending;      // the head buffer is in a send (sends are serialized per connection)
  uint8_t eof;          // peer shut down its side: echo what is queued, then close
  uint8_t closing;      // error seen: drop what is queued, close once nothing is in flight
  uint8_t cancel_sent;  // an ASYNC_CANCEL for the recv was submitted
  uint8_t parked;       // in the parked list: waiting for the ring to have buffers again
};

// Per-buffer state: while a buffer is owned by a connection it is in that connection's FIFO.
struct buf_state {
  uint32_t next;
  uint32_t off, len;  // bytes [off, len) still to send
};

static struct io_uring ring;
static struct io_uring_buf_ring* br;
static unsigned char* buf_base;
static struct buf_state* bufs;
static unsigned nbufs = 4096, buf_size = 4096, max_held = 64;
static unsigned ring_mask, pending_returns;
static struct conn* conns;
static size_t max_fds;
static int lfd, sfd;
static struct signalfd_siginfo siginfo;
static struct __kernel_timespec accept_backoff = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
static int stop;
static int* parked;  // connections whose recv hit -ENOBUFS while holding no buffer
static size_t nparked;

static void die(const char* what, int err) {
  fprintf(stderr, "uring_echo: %s: %s\n", what, strerror(err));
  exit(1);
}

// TRICKY: io_uring_get_sqe returns NULL when the SQ is full; submitting frees the slots. A
// submit does not touch the CQ, so this is safe in the middle of dispatching a batch.
static struct io_uring_sqe* get_sqe(void) {
  struct io_uring_sqe* sqe;
  while (!(sqe = io_uring_get_sqe(&ring))) {
    int r = io_uring_submit(&ring);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) die("io_uring_submit", -r);
  }
  return sqe;
}

static void return_buf(uint32_t bid) {
  io_uring_buf_ring_add(br, buf_base + (size_t)bid * buf_size, buf_size, (unsigned short)bid,
                        (int)ring_mask, (int)pending_returns++);
}

static void arm_accept(void) {
  struct io_uring_sqe* sqe = get_sqe();
  io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, ud(K_ACCEPT, 0, lfd));
}

static void arm_signal(void) {
  struct io_uring_sqe* sqe = get_sqe();
  io_uring_prep_read(sqe, sfd, &siginfo, sizeof siginfo, 0);
  io_uring_sqe_set_data64(sqe, ud(K_SIGNAL, 0, sfd));
}

static void arm_recv(int fd) {
  struct conn* c = &conns[fd];
  struct io_uring_sqe* sqe = get_sqe();
  io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = 0;
  io_uring_sqe_set_data64(sqe, ud(K_RECV, 0, fd));
  c->recv_armed = 1;
  c->cancel_sent = 0;
  c->inflight++;
}

static void cancel_recv(int fd) {
  struct conn* c = &conns[fd];
  if (!c->recv_armed || c->cancel_sent) return;
  struct io_uring_sqe* sqe = get_sqe();
  io_uring_prep_cancel64(sqe, ud(K_RECV, 0, fd), 0);
  io_uring_sqe_set_data64(sqe, 0);  // the cancel's own CQE is ignored; we wait for the recv's
  c->cancel_sent = 1;
}

static void submit_send(int fd, uint32_t bid) {
  struct buf_state* b = &bufs[bid];
  struct io_uring_sqe* sqe = get_sqe();
  // MSG_WAITALL: the kernel retries a partial send itself, so short sends (still handled) are rare.
  io_uring_prep_send(sqe, fd, buf_base + (size_t)bid * buf_size + b->off, b->len - b->off,
                     MSG_NOSIGNAL | MSG_WAITALL);
  io_uring_sqe_set_data64(sqe, ud(K_SEND, bid, fd));
  conns[fd].sending = 1;
  conns[fd].inflight++;
}

// Closes the connection once no op names it any more. After an error the queued buffers are
// dropped (returned); after EOF they are echoed first (half-close: the peer still reads).
static void maybe_close(int fd) {
  struct conn* c = &conns[fd];
  if (!c->closing && !c->eof) return;
  if (c->closing && !c->sending) {
    while (c->head != NO_BUF) {
      uint32_t bid = c->head;
      c->head = bufs[bid].next;
      return_buf(bid);
      c->held--;
    }
    c->tail = NO_BUF;
  }
  if (c->recv_armed) cancel_recv(fd);
  if (c->inflight == 0 && c->head == NO_BUF) {
    close(fd);
    c->open = 0;
  }
}

static void maybe_rearm(int fd) {
  struct conn* c = &conns[fd];
  // Backpressure (docs/design.md, "Buffer rings and backpressure"): a connection whose echoes are
  // not being drained may not drain the shared ring; its recv stays disarmed until it holds at most
  // half its quota.
  if (!c->recv_armed && !c->closing && !c->eof && c->held <= max_held / 2) arm_recv(fd);
}

// Re-arms parked connections once buffers came back (called before each submit).
static void unpark(unsigned available) {
  while (nparked > 0 && available-- > 0) {
    int fd = parked[--nparked];
    conns[fd].parked = 0;
    if (conns[fd].open) maybe_rearm(fd);
  }
}

static void on_accept(int res, uint32_t flags) {
  if (res >= 0) {
    if ((size_t)res >= max_fds) {
      close(res);
    } else {
      int one = 1;
      setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      struct conn* c = &conns[res];
      memset(c, 0, sizeof *c);
      c->head = c->tail = NO_BUF;
      c->open = 1;
      arm_recv(res);
    }
  }
  if (!(flags & IORING_CQE_F_MORE)) {
    if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
      // Re-arming at once would spin on the full fd table (multishot accept ends with EMFILE; the
      // connections stay in the backlog): back off first.
      struct io_uring_sqe* sqe = get_sqe();
      io_uring_prep_timeout(sqe, &accept_backoff, 0, 0);
      io_uring_sqe_set_data64(sqe, ud(K_TIMER, 0, lfd));
    } else {
      arm_accept();
    }
  }
}

static void on_recv(int fd, int res, uint32_t flags) {
  struct conn* c = &conns[fd];
  if (!(flags & IORING_CQE_F_MORE)) {
    c->recv_armed = 0;
    c->inflight--;
  }
  if (flags & IORING_CQE_F_BUFFER) {
    uint32_t bid = flags >> IORING_CQE_BUFFER_SHIFT;
    if (res <= 0 || c->closing) {
      return_buf(bid);  // a buffer can come with res <= 0 (axboe/liburing#359)
    } else {
      bufs[bid].next = NO_BUF;
      bufs[bid].off = 0;
      bufs[bid].len = (uint32_t)res;
      if (c->tail == NO_BUF)
        c->head = bid;
      else
        bufs[c->tail].next = bid;
      c->tail = bid;
      c->held++;
      if (!c->sending) submit_send(fd, bid);
      if (c->held >= max_held) cancel_recv(fd);
    }
  }
  if (res == 0) c->eof = 1;
  if (res < 0 && res != -ENOBUFS && res != -ECANCELED) c->closing = 1;
  if (c->closing || c->eof) {
    maybe_close(fd);
  } else if (!c->recv_armed && res == -ENOBUFS && c->held == 0) {
    // Nothing of ours will come back to trigger a re-arm, and re-arming now would spin on the
    // empty ring: wait until some connection returns a buffer.
    if (!c->parked) {
      c->parked = 1;
      parked[nparked++] = fd;
    }
  } else if (!c->recv_armed) {
    // -ENOBUFS (ring empty), our own cancel, or the kernel ended the multishot: re-arm when
    // allowed. ENOBUFS leaves the unread bytes in the socket (docs/design.md, "Buffer rings and
    // backpressure").
    maybe_rearm(fd);
  }
}

static void on_send(int fd, uint32_t bid, int res) {
  struct conn* c = &conns[fd];
  struct buf_state* b = &bufs[bid];
  c->inflight--;
  c->sending = 0;
  if (res < 0) {
    c->closing = 1;
  } else {
    b->off += (uint32_t)res;
    if (b->off < b->len && !c->closing) {
      submit_send(fd, bid);  // short send: resubmit the remainder, order is kept
      return;
    }
  }
  c->head = b->next;
  if (c->head == NO_BUF) c->tail = NO_BUF;
  return_buf(bid);
  c->held--;
  if (c->closing) {
    maybe_close(fd);
    return;
  }
  if (c->head != NO_BUF)
    submit_send(fd, c->head);
  else if (c->eof)
    maybe_close(fd);
  maybe_rearm(fd);
}

static void setup_ring(void) {
  struct io_uring_params p;
  unsigned const entries = 2048;
  unsigned const try_flags[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,  // 6.1+
      IORING_SETUP_COOP_TASKRUN,                                // 5.19+
      0,
  };
  int r = -EINVAL;
  for (size_t i = 0; i < sizeof try_flags / sizeof try_flags[0]; ++i) {
    memset(&p, 0, sizeof p);
    p.flags = try_flags[i] | IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 8;
    r = io_uring_queue_init_params(entries, &ring, &p);
    if (r != -EINVAL) break;
  }
  if (r < 0) die("io_uring_queue_init_params", -r);

  // Provided-buffer ring by hand: page-aligned ring memory + io_uring_register_buf_ring.
  size_t ring_bytes = (size_t)nbufs * sizeof(struct io_uring_buf);
  void* mem = NULL;
  int e = posix_memalign(&mem, (size_t)sysconf(_SC_PAGESIZE), ring_bytes);
  if (e) die("posix_memalign", e);
  memset(mem, 0, ring_bytes);
  br = mem;
  struct io_uring_buf_reg reg = {
      .ring_addr = (uint64_t)(uintptr_t)br, .ring_entries = nbufs, .bgid = 0};
  r = io_uring_register_buf_ring(&ring, &reg, 0);
  if (r < 0) die("io_uring_register_buf_ring (needs Linux 5.19)", -r);
  io_uring_buf_ring_init(br);
  e = posix_memalign(&mem, (size_t)sysconf(_SC_PAGESIZE), (size_t)nbufs * buf_size);
  if (e) die("posix_memalign", e);
  buf_base = mem;
  // Fault the pool in now: it is a fixed cost, and RSS-per-connection (memory.py) must not
  // mistake the ring filling up with touched pages for per-connection memory.
  memset(buf_base, 0, (size_t)nbufs * buf_size);
  bufs = calloc(nbufs, sizeof *bufs);
  if (!bufs) die("calloc", ENOMEM);
  ring_mask = (unsigned)io_uring_buf_ring_mask(nbufs);
  for (unsigned i = 0; i < nbufs; ++i)
    return_buf(i);
  io_uring_buf_ring_advance(br, (int)pending_returns);
  pending_returns = 0;
}

static void usage(void) {
  fprintf(stderr,
          "usage: uring_echo [--port N] [--buffers POW2] [--buffer-size BYTES] [--max-held N]\n");
  exit(2);
}

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc)
      port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--buffers") && i + 1 < argc)
      nbufs = (unsigned)strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--buffer-size") && i + 1 < argc)
      buf_size = (unsigned)strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--max-held") && i + 1 < argc)
      max_held = (unsigned)strtoul(argv[++i], NULL, 10);
    else
      usage();
  }
  if (nbufs == 0 || nbufs > 32768 || (nbufs & (nbufs - 1)) || buf_size == 0 || max_held < 2)
    usage();

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  max_fds = rl.rlim_cur > (1u << 22) ? (1u << 22) : (size_t)rl.rlim_cur;
  conns = calloc(max_fds, sizeof *conns);
  parked = calloc(max_fds, sizeof *parked);
  if (!conns || !parked) die("calloc", ENOMEM);

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  if (sfd < 0) die("signalfd", errno);

  lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket", errno);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr*)&addr, sizeof addr) < 0) die("bind", errno);
  if (listen(lfd, 4096) < 0) die("listen", errno);
  socklen_t alen = sizeof addr;
  getsockname(lfd, (struct sockaddr*)&addr, &alen);

  setup_ring();
  arm_accept();
  arm_signal();
  printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
  fflush(stdout);

  struct io_uring_cqe* batch[256];
  struct {
    uint64_t data;
    int res;
    uint32_t flags;
  } done[256];
  while (!stop) {
    if (pending_returns) {  // publish returned buffers before the kernel sees new recvs
      unsigned available = pending_returns;
      io_uring_buf_ring_advance(br, (int)pending_returns);
      pending_returns = 0;
      unpark(available);
    }
    int r = io_uring_submit_and_wait(&ring, 1);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME)
      die("io_uring_submit_and_wait", -r);
    unsigned n;
    // Copy each batch out and advance the CQ before dispatching (STYLE run-loop rule 2).
    while ((n = io_uring_peek_batch_cqe(&ring, batch, 256)) > 0) {
      for (unsigned i = 0; i < n; ++i) {
        done[i].data = batch[i]->user_data;
        done[i].res = batch[i]->res;
        done[i].flags = batch[i]->flags;
      }
      io_uring_cq_advance(&ring, n);
      for (unsigned i = 0; i < n; ++i) {
        uint64_t d = done[i].data;
        int fd = (int)(uint32_t)d;
        uint32_t bid = (uint32_t)(d >> 32) & 0xffffff;
        switch ((enum kind)(d >> 56)) {
          case K_IGNORE:
            break;
          case K_ACCEPT:
            on_accept(done[i].res, done[i].flags);
            break;
          case K_RECV:
            on_recv(fd, done[i].res, done[i].flags);
            break;
          case K_SEND:
            on_send(fd, bid, done[i].res);
            break;
          case K_SIGNAL:
            stop = 1;
            break;
          case K_TIMER:
            arm_accept();
            break;
        }
      }
    }
  }
  io_uring_queue_exit(&ring);
  return 0;
}
