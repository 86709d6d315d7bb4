// SPDX-License-Identifier: MIT
// Description: what coring's headers need from the compiler, checked first, with a clear message.
#pragma once

// coroutines, concepts, <span> and designated initializers: C++20. g++ 12 defaults to C++17,
// where <coroutine> fails with an error that does not name the flag. g++ 11+ and clang 10+
// define __cplusplus as 202002L under -std=c++20 (and -std=gnu++20).
#if __cplusplus < 202002L
#error "coring needs C++20: compile with -std=c++20 (or later)"
#endif
