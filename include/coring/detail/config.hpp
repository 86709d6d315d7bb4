// SPDX-License-Identifier: MIT
// Description: what every coring header needs from the compiler: C++20.
#pragma once

#if __cplusplus < 202002L
#error "coring needs C++20: compile with -std=c++20 (or later)"
#endif
