#include "base/allocator.h"

#include <cstddef>

#include "absl/strings/str_cat.h"

// gperftools' C API (gperftools/malloc_extension_c.h), weak: null unless
// libtcmalloc is loaded, so this compiles and links without it.
extern "C" {
int MallocExtension_GetNumericProperty(const char* property, size_t* value)
    __attribute__((weak));
void MallocExtension_ReleaseFreeMemory() __attribute__((weak));
}

namespace coach {
namespace {

bool HaveTcmalloc() {
  return MallocExtension_GetNumericProperty != nullptr &&
         MallocExtension_ReleaseFreeMemory != nullptr;
}

uint64_t Property(const char* name) {
  size_t value = 0;
  return MallocExtension_GetNumericProperty(name, &value) ? value : 0;
}

}  // namespace

AllocatorStats ReadAllocatorStats() {
  AllocatorStats stats;
  if (!HaveTcmalloc()) return stats;
  stats.available = true;
  stats.allocated_bytes = Property("generic.current_allocated_bytes");
  stats.pageheap_free_bytes = Property("tcmalloc.pageheap_free_bytes");
  stats.cache_free_bytes = Property("tcmalloc.central_cache_free_bytes") +
                           Property("tcmalloc.transfer_cache_free_bytes") +
                           Property("tcmalloc.thread_cache_free_bytes");
  stats.unmapped_bytes = Property("tcmalloc.pageheap_unmapped_bytes");
  return stats;
}

void ReleaseAllocatorFreeMemory() {
  if (HaveTcmalloc()) MallocExtension_ReleaseFreeMemory();
}

std::string RenderAllocatorMetrics() {
  const AllocatorStats stats = ReadAllocatorStats();
  if (!stats.available) return "";
  std::string out;
  auto gauge = [&out](const char* name, const char* help, uint64_t value) {
    absl::StrAppend(&out, "# HELP coach_process_allocator_", name, "_bytes ",
                    help, "\n# TYPE coach_process_allocator_", name,
                    "_bytes gauge\ncoach_process_allocator_", name, "_bytes ",
                    value, "\n");
  };
  gauge("allocated", "Bytes the program has allocated (tcmalloc).",
        stats.allocated_bytes);
  gauge("free",
        "Bytes free in tcmalloc's page heap, still mapped (part of RSS).",
        stats.pageheap_free_bytes);
  gauge("cache",
        "Bytes free in tcmalloc's central, transfer and per-thread caches.",
        stats.cache_free_bytes);
  gauge("unmapped", "Bytes tcmalloc has given back to the OS (not in RSS).",
        stats.unmapped_bytes);
  return out;
}

}  // namespace coach
