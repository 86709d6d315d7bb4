// SPDX-License-Identifier: MIT
// Description: umbrella header: everything a coring user needs.
#pragma once

#include <coring/acceptor.hpp>
#include <coring/address.hpp>
#include <coring/ancillary.hpp>
#include <coring/buffer_ring.hpp>
#include <coring/datagram.hpp>
#include <coring/error.hpp>
#include <coring/io_context.hpp>
#include <coring/reader.hpp>
#include <coring/recv_stream.hpp>
#include <coring/resolve.hpp>
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
#include <coring/when_all.hpp>
