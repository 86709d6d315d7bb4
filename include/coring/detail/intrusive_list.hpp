// SPDX-License-Identifier: MIT
// Description: intrusive_list, the doubly linked list of nodes it does not own that the task
// layer, the cancel list, connection_scope, the resolver and the waiter queues share.
#pragma once

#include <coring/detail/config.hpp>  // first: the C++20 check

namespace coring::detail {

/// The links a node carries to be on one intrusive_list (embed one per list it can join).
template <class T>
struct list_links {
  T* prev = nullptr;
  T* next = nullptr;
};

/// A doubly linked list threaded through Links in each node: O(1) push, remove and replace,
/// no allocation. The list owns nothing: a node must be removed before it dies or moves.
template <class T, list_links<T> T::*Links>
class intrusive_list {
 public:
  intrusive_list() noexcept = default;
  intrusive_list(const intrusive_list&) = delete;
  intrusive_list& operator=(const intrusive_list&) = delete;

  /// The first node, or null.
  T* front() const noexcept { return head_; }
  /// The node after n, or null.
  static T* next(const T& n) noexcept { return (n.*Links).next; }
  bool empty() const noexcept { return head_ == nullptr; }

  /// Links n (not on any list) first.
  void push_front(T& n) noexcept {
    list_links<T>& l = n.*Links;
    l.prev = nullptr;
    l.next = head_;
    (head_ ? (head_->*Links).prev : tail_) = &n;
    head_ = &n;
  }
  /// Links n (not on any list) last.
  void push_back(T& n) noexcept {
    list_links<T>& l = n.*Links;
    l.next = nullptr;
    l.prev = tail_;
    (tail_ ? (tail_->*Links).next : head_) = &n;
    tail_ = &n;
  }
  /// Unlinks n, which is on this list.
  void remove(T& n) noexcept {
    list_links<T>& l = n.*Links;
    (l.prev ? (l.prev->*Links).next : head_) = l.next;
    (l.next ? (l.next->*Links).prev : tail_) = l.prev;
    l.prev = l.next = nullptr;
  }
  /// Puts to (not on any list) where from is, and unlinks from (a node that moves).
  void replace(T& from, T& to) noexcept {
    list_links<T>& f = from.*Links;
    list_links<T>& t = to.*Links;
    t = f;
    (t.prev ? (t.prev->*Links).next : head_) = &to;
    (t.next ? (t.next->*Links).prev : tail_) = &to;
    f.prev = f.next = nullptr;
  }
  /// Forgets every node without touching them (their links are stale afterwards).
  void clear() noexcept { head_ = tail_ = nullptr; }

 private:
  T* head_ = nullptr;
  T* tail_ = nullptr;
};

}  // namespace coring::detail
