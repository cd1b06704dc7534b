// Default options of the sanitizer runtimes, compiled into every executable of
// a sanitizer build (-DCOACH_SANITIZE=..., see sanitizers.cmake), so that a
// test binary run by hand behaves as under CTest. The runtimes call these
// functions at start-up; ASAN_OPTIONS, UBSAN_OPTIONS, LSAN_OPTIONS and
// TSAN_OPTIONS in the environment still override them.
//
// The suppression files next to this one list, with a reason for each entry,
// the reports that are not ours to fix.

#ifndef COACH_SANITIZER_DIR
#error "COACH_SANITIZER_DIR must name tools/sanitizers"
#endif

extern "C" {

#if defined(__SANITIZE_ADDRESS__)
// A report is a failure: the process exits non-zero at the first one.
const char* __asan_default_options() {
  return "detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return="
         "1:"
         "check_initialization_order=1:strict_init_order=1";
}
const char* __lsan_default_options() {
  return "suppressions=" COACH_SANITIZER_DIR "/lsan.supp:print_suppressions=0";
}
const char* __ubsan_default_options() {
  return "print_stacktrace=1:halt_on_error=1";
}
#endif

#if defined(__SANITIZE_THREAD__)
// TSan keeps going after a report and exits with 66 at the end: every report
// of a run is printed, and the test still fails.
// ignore_noninstrumented_modules: the libc functions TSan intercepts (memcpy,
// free...) check memory only when called from instrumented code (ours), not
// from Debian's uninstrumented libraries (gRPC, Abseil, protobuf, SQLite,
// libcurl), whose own synchronisation TSan cannot see. Their locking calls
// (pthread, and absl::Mutex through absl_tsan_shim.cc) still count.
const char* __tsan_default_options() {
  return "suppressions=" COACH_SANITIZER_DIR
         "/tsan.supp:print_suppressions=0:"
         "ignore_noninstrumented_modules=1:second_deadlock_stack=1:"
         "history_size=4";
}
#endif

}  // extern "C"
