// Makes ThreadSanitizer see absl's synchronisation. Linked into every
// executable of the TSan build (-DCOACH_SANITIZE=thread) and nowhere else.
//
// Why it exists: Debian's Abseil is a set of shared libraries compiled
// without -fsanitize=thread, so absl::Mutex, absl::CondVar and
// absl::Notification never tell TSan that they acquire or release anything.
// Our code, and gRPC's own locks (grpc_core::Mutex and gpr_mu are
// absl::Mutex), guard memory with them; without this file a TSan build fails
// most suites with tens of thousands of reports at lines an absl::Mutex
// guards. Abseil has the annotations (ABSL_TSAN_MUTEX_*) but they are compiled
// only when Abseil itself is built with TSan.
//
// How: absl's synchronisation entry points are out of line, exported by
// libabsl_synchronization.so and called through the PLT, both from our code
// and from libgrpc/libgpr (and between absl's own functions: Notification
// calls Mutex::Lock through the PLT). An executable's dynamic symbols come
// first in the lookup order, so defining the same functions here (they are
// exported with -Wl,--export-dynamic-symbol, see sanitizers.cmake) routes
// every call, ours and gRPC's, through these definitions. Each one tells TSan
// what happens, with the annotations Abseil itself would use
// (__tsan_mutex_pre_lock/post_lock/pre_unlock/post_unlock), and forwards to the
// real function found with dlsym(RTLD_NEXT, ...). Between pre_* and post_*,
// TSan ignores the thread's memory accesses: that covers the conditions
// (absl::Condition) that absl evaluates while it holds the lock, on the
// waiter's or on the unlocker's thread.
//
// Which functions: only the bottom of absl's internal call graph (checked
// with objdump -d on libabsl_synchronization.so 20220623): the *WithTimeout
// variants call the *WithDeadline ones through the PLT, and every Await* and
// CondVar::Wait* ends in AwaitCommon / WaitCommon, so annotating both levels
// would count one lock twice. The shim aborts at the first call if a symbol
// is missing, rather than silently annotating nothing.
//
// Not annotated: ~Mutex. __tsan_mutex_destroy counts as a write to the mutex,
// and gRPC frees its objects after dropping reference counts that live in
// uninstrumented code: TSan would report every such destruction as racing
// with the last lock. A freed mutex's state is dropped by TSan with the
// memory anyway.
//
// Limits: Mutex::AwaitCommon and CondVar::WaitCommon are annotated as waits
// under an exclusive (writer) lock, which is how our code and gRPC use them; a
// wait under a reader lock would make TSan report a bad unlock (loudly, not
// silently). Memory accesses inside the uninstrumented libraries themselves
// stay invisible: this makes TSan see their locks, not check their code.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

// The mangled names below spell the inline namespace of Debian's build.
#define COACH_STRINGIFY2(x) #x
#define COACH_STRINGIFY(x) COACH_STRINGIFY2(x)
static_assert(sizeof(COACH_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME)) == 8 &&
                  COACH_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME)[0] == 'd',
              "the mangled names below assume absl::debian3");
#define ABSL_NS "_ZN4absl7debian3"
#define ABSL_NSK "_ZNK4absl7debian3"

template <typename Fn>
Fn Real(const char* mangled) {
  void* fn = dlsym(RTLD_NEXT, mangled);
  if (fn == nullptr) {
    std::fprintf(stderr, "absl_tsan_shim: %s not found after the executable\n",
                 mangled);
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

// Notification::HasBeenNotified() is inline: our instrumented code does an
// acquire load of notified_yet_, so Notify() releases on that address. The
// layout (a Mutex, then the flag) is checked against the real class.
struct NotificationLayout {
  absl::Mutex mutex;
  std::atomic<bool> notified_yet;
};
static_assert(sizeof(NotificationLayout) == sizeof(absl::Notification));
void* NotifiedFlag(const absl::Notification* n) {
  return const_cast<char*>(reinterpret_cast<const char*>(n)) +
         offsetof(NotificationLayout, notified_yet);
}

constexpr unsigned kRead = __tsan_mutex_read_lock;
constexpr unsigned kTry = __tsan_mutex_try_lock;
constexpr unsigned kTryFailed = __tsan_mutex_try_lock_failed;

// Brackets a call that returns with the lock held.
template <typename Call>
auto Locking(absl::Mutex* mu, unsigned flags, Call call) {
  __tsan_mutex_pre_lock(mu, flags);
  auto held = call();
  __tsan_mutex_post_lock(mu, flags, 0);
  return held;
}

// Brackets a call made with the lock held that releases it while it waits and
// holds it again on return.
template <typename Call>
auto Waiting(absl::Mutex* mu, Call call) {
  __tsan_mutex_pre_unlock(mu, 0);
  auto result = call();
  __tsan_mutex_post_unlock(mu, 0);
  __tsan_mutex_pre_lock(mu, 0);
  __tsan_mutex_post_lock(mu, 0, 0);
  return result;
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

using synchronization_internal::KernelTimeout;

void Mutex::Lock() {
  static const auto real = Real<void (*)(Mutex*)>(ABSL_NS "5Mutex4LockEv");
  Locking(this, 0, [&] {
    real(this);
    return true;
  });
}

void Mutex::ReaderLock() {
  static const auto real =
      Real<void (*)(Mutex*)>(ABSL_NS "5Mutex10ReaderLockEv");
  Locking(this, kRead, [&] {
    real(this);
    return true;
  });
}

bool Mutex::TryLock() {
  static const auto real = Real<bool (*)(Mutex*)>(ABSL_NS "5Mutex7TryLockEv");
  __tsan_mutex_pre_lock(this, kTry);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this, kTry | (locked ? 0 : kTryFailed), 0);
  return locked;
}

bool Mutex::ReaderTryLock() {
  static const auto real =
      Real<bool (*)(Mutex*)>(ABSL_NS "5Mutex13ReaderTryLockEv");
  __tsan_mutex_pre_lock(this, kRead | kTry);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this, kRead | kTry | (locked ? 0 : kTryFailed), 0);
  return locked;
}

void Mutex::Unlock() {
  static const auto real = Real<void (*)(Mutex*)>(ABSL_NS "5Mutex6UnlockEv");
  __tsan_mutex_pre_unlock(this, 0);
  real(this);
  __tsan_mutex_post_unlock(this, 0);
}

void Mutex::ReaderUnlock() {
  static const auto real =
      Real<void (*)(Mutex*)>(ABSL_NS "5Mutex12ReaderUnlockEv");
  __tsan_mutex_pre_unlock(this, kRead);
  real(this);
  __tsan_mutex_post_unlock(this, kRead);
}

void Mutex::LockWhen(const Condition& cond) {
  static const auto real = Real<void (*)(Mutex*, const Condition&)>(
      ABSL_NS "5Mutex8LockWhenERKNS0_9ConditionE");
  Locking(this, 0, [&] {
    real(this, cond);
    return true;
  });
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  static const auto real = Real<void (*)(Mutex*, const Condition&)>(
      ABSL_NS "5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  Locking(this, kRead, [&] {
    real(this, cond);
    return true;
  });
}

// Returns with the lock held whether or not the condition became true.
bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, absl::Time)>(
      ABSL_NS "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return Locking(this, 0, [&] { return real(this, cond, deadline); });
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond,
                                       absl::Time deadline) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, absl::Time)>(
      ABSL_NS "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return Locking(this, kRead, [&] { return real(this, cond, deadline); });
}

// Await, AwaitWithTimeout and AwaitWithDeadline all end here.
bool Mutex::AwaitCommon(const Condition& cond, KernelTimeout t) {
  static const auto real =
      Real<bool (*)(Mutex*, const Condition&, KernelTimeout)>(
          ABSL_NS
          "5Mutex11AwaitCommonERKNS0_9ConditionENS0_24synchronization_"
          "internal13KernelTimeoutE");
  return Waiting(this, [&] { return real(this, cond, t); });
}

// CondVar::Wait, WaitWithTimeout and WaitWithDeadline all end here.
bool CondVar::WaitCommon(Mutex* mutex, KernelTimeout t) {
  static const auto real = Real<bool (*)(CondVar*, Mutex*, KernelTimeout)>(
      ABSL_NS
      "7CondVar10WaitCommonEPNS0_5MutexENS0_24synchronization_"
      "internal13KernelTimeoutE");
  return Waiting(mutex, [&] { return real(this, mutex, t); });
}

// Notify locks and unlocks mutex_ (annotated above); the release below is
// for a waiter that sees the flag without taking the lock.
void Notification::Notify() {
  static const auto real =
      Real<void (*)(Notification*)>(ABSL_NS "12Notification6NotifyEv");
  __tsan_release(NotifiedFlag(this));
  real(this);
}

void Notification::WaitForNotification() const {
  static const auto real = Real<void (*)(const Notification*)>(
      ABSL_NSK "12Notification19WaitForNotificationEv");
  real(this);
  __tsan_acquire(NotifiedFlag(this));
}

bool Notification::WaitForNotificationWithTimeout(
    absl::Duration timeout) const {
  static const auto real = Real<bool (*)(const Notification*, absl::Duration)>(
      ABSL_NSK "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(NotifiedFlag(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(absl::Time deadline) const {
  static const auto real = Real<bool (*)(const Notification*, absl::Time)>(
      ABSL_NSK "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool notified = real(this, deadline);
  if (notified) __tsan_acquire(NotifiedFlag(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
