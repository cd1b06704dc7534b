// What the process's allocator holds, and giving its free memory back to
// the OS. Both binaries link tcmalloc (gperftools, CMakeLists.txt's
// coach_allocator), which keeps freed memory in its page heap, central
// free lists and per-thread caches and returns little of it on its own:
// after a burst, RSS stays near the peak. Tests and sanitizer builds do not
// link tcmalloc: then Allocator().available is false and the functions do
// nothing (tcmalloc's C entry points are weak references, resolved only
// when libtcmalloc is loaded).
#ifndef COACH_BASE_ALLOCATOR_H_
#define COACH_BASE_ALLOCATOR_H_

#include <cstdint>
#include <string>

namespace coach {

struct AllocatorStats {
  // False without tcmalloc: every figure 0.
  bool available = false;
  // In use by the program.
  uint64_t allocated_bytes = 0;
  // Free in the page heap, still mapped (counted in RSS once touched).
  uint64_t pageheap_free_bytes = 0;
  // Free in the central, transfer and per-thread caches (mapped).
  uint64_t cache_free_bytes = 0;
  // Given back to the OS (madvise'd away), still reserved.
  uint64_t unmapped_bytes = 0;
};

AllocatorStats ReadAllocatorStats();

// Returns the page heap's free spans to the OS (tcmalloc's
// ReleaseFreeMemory: madvise(MADV_DONTNEED)); the caches stay. Takes the
// page heap's lock for a moment: call it from a background thread, never
// per request. No-op without tcmalloc.
void ReleaseAllocatorFreeMemory();

// The figures as Prometheus gauges (text format 0.0.4):
// coach_process_allocator_{allocated,free,cache,unmapped}_bytes; "" without
// tcmalloc.
std::string RenderAllocatorMetrics();

}  // namespace coach

#endif  // COACH_BASE_ALLOCATOR_H_
