// SPDX-License-Identifier: MIT
// Description: deny_io_uring [--errno EPERM|ENOSYS] PROGRAM ARGS...: runs PROGRAM under a
// seccomp filter that makes io_uring_setup, io_uring_enter and io_uring_register fail (EPERM by
// default, as the default seccomp profiles of Docker and Podman do) and allows every other
// system call. The filter is inherited by PROGRAM's children.
//
// A raw BPF program (ten instructions) rather than libseccomp: it needs no -dev package, so
// the tests that use it never skip for a missing library, and the whole filter can be read
// below. It is not a sandbox: a system call of a foreign architecture (its audit arch differs)
// is allowed; it only reproduces what a container runtime does to a native program.
//
// Exit status: PROGRAM's; 77 if the filter cannot be installed (no seccomp: the caller should
// skip); 2 on bad arguments; 125 if the installed filter does not deny io_uring_setup (a bug
// here); 127 if PROGRAM cannot be executed.
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

// io_uring's system call numbers are the same on every architecture but alpha (425..427 since
// Linux 5.1); the uapi headers of older toolchains may lack them.
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif

#if defined(__x86_64__) && defined(__ILP32__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_X86_64  // x32: the x86_64 arch with __X32_SYSCALL_BIT
#elif defined(__x86_64__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__i386__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_I386
#elif defined(__aarch64__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_AARCH64
#elif defined(__riscv) && __riscv_xlen == 64
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_RISCV64
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_PPC64LE
#elif defined(__s390x__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_S390X
#endif

// Bits cleared from the system call number (and from the numbers it is compared with): x86_64's
// x32 calls carry __X32_SYSCALL_BIT (0x40000000) and must be denied too.
#if defined(__x86_64__)
#define NR_MASK 0xbfffffffU
#else
#define NR_MASK 0xffffffffU
#endif

static int usage(void) {
  fprintf(stderr, "usage: deny_io_uring [--errno EPERM|ENOSYS] PROGRAM ARGS...\n");
  return 2;
}

int main(int argc, char** argv) {
  int err = EPERM;
  int first = 1;
  if (argc > 2 && strcmp(argv[1], "--errno") == 0) {
    if (strcmp(argv[2], "EPERM") == 0) {
      err = EPERM;
    } else if (strcmp(argv[2], "ENOSYS") == 0) {
      err = ENOSYS;
    } else {
      return usage();
    }
    first = 3;
  }
  if (first >= argc || argv[first][0] == '-') return usage();

  struct sock_filter filter[] = {
#ifdef NATIVE_AUDIT_ARCH
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_AUDIT_ARCH, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),  // a foreign architecture: not ours to deny
#endif
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, NR_MASK),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup & NR_MASK, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter & NR_MASK, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register & NR_MASK, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
  };
  struct sock_fprog prog = {.len = (unsigned short)(sizeof filter / sizeof filter[0]),
                            .filter = filter};
  // Without no_new_privs an unprivileged process may not install a filter (and a set-uid
  // program it runs then does not gain privileges either).
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    fprintf(stderr, "deny_io_uring: prctl(PR_SET_NO_NEW_PRIVS): %s\n", strerror(errno));
    return 77;
  }
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) {
    fprintf(stderr, "deny_io_uring: seccomp unavailable: prctl(PR_SET_SECCOMP): %s\n",
            strerror(errno));
    return 77;
  }
  // Self-check: io_uring_setup(0, NULL) would fail with EINVAL or EFAULT if the filter let it
  // through.
  errno = 0;
  if (syscall(__NR_io_uring_setup, 0, NULL) != -1 || errno != err) {
    fprintf(stderr, "deny_io_uring: the filter did not deny io_uring_setup (errno %d: %s)\n", errno,
            strerror(errno));
    return 125;
  }
  execvp(argv[first], argv + first);
  fprintf(stderr, "deny_io_uring: cannot execute %s: %s\n", argv[first], strerror(errno));
  return 127;
}
