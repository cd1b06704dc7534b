// The benchmark tools open coach-server's SQLite file the way coach-server
// does (settings from config.h), in one place.
#ifndef COACH_TOOLS_BENCH_BENCH_STORE_H_
#define COACH_TOOLS_BENCH_BENCH_STORE_H_

#include <cstdio>
#include <memory>
#include <string>

#include "server/app/server_config.h"
#include "storage/sqlite_store.h"

namespace coach::bench {

// The store at `path`, or null after printing why, prefixed with `tool`.
inline std::unique_ptr<SqliteStore> OpenStore(const char* tool,
                                              const std::string& path,
                                              const Config& config,
                                              int reader_connections) {
  auto store = SqliteStore::Open(
      SqliteOptions{.path = path,
                    .busy_timeout_ms = config.sqlite_busy_timeout_ms,
                    .reader_connections = reader_connections});
  if (!store.ok()) {
    std::fprintf(stderr, "%s: %s\n", tool, store.status().ToString().c_str());
    return nullptr;
  }
  return *std::move(store);
}

}  // namespace coach::bench

#endif  // COACH_TOOLS_BENCH_BENCH_STORE_H_
