// SPDX-License-Identifier: MIT
// Description: umbrella header: everything a coring user needs.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

#include <coring/acceptor.hpp>
#include <coring/address.hpp>
#include <coring/ancillary.hpp>
#include <coring/buffer_ring.hpp>
#include <coring/channel.hpp>
#include <coring/connection_scope.hpp>
#include <coring/datagram.hpp>
#include <coring/error.hpp>
#include <coring/event.hpp>
#include <coring/file.hpp>
#include <coring/io_context.hpp>
#include <coring/mutex.hpp>
#include <coring/reader.hpp>
#include <coring/recv_stream.hpp>
#include <coring/resolve.hpp>
#include <coring/runner.hpp>
#include <coring/semaphore.hpp>
#include <coring/signal.hpp>
#include <coring/socket.hpp>
#include <coring/sockopt.hpp>
#include <coring/sync_wait.hpp>
#include <coring/task.hpp>
#include <coring/task_group.hpp>
#include <coring/tcp.hpp>
#include <coring/threads.hpp>
#include <coring/timer.hpp>
#include <coring/unique_fd.hpp>
#include <coring/wait_group.hpp>
#include <coring/when_all.hpp>

// TLS (issue 13): only when coring was built with it (OpenSSL 3).
#include <coring/detail/tls_config.hpp>
#if CORING_HAS_TLS
#include <coring/tls.hpp>
#endif
