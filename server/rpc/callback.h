// CallRunner: where a callback-API handler does its work.
//
// Inline (no pool): on the gRPC thread that read the request. Right for an
// embedded store (SQLite) that answers in microseconds: no hand-off at all.
//
// On a pool: for a store across the network (PostgreSQL). gRPC's callback
// API serves a whole process with very few threads (two on a machine with up
// to 5 cores: gRPC 1.51's "nexting" threads), and a handler that waits on a
// database round trip holds one of them: two round trips at a time per
// process, whatever the connection pool. The pool runs the handlers' work
// instead, up to its size at once (the connection pool's size), and gRPC's
// threads go back to reading and writing calls.
//
// Thread-safety: const and thread-safe; the pool must outlive every call.
#ifndef COACH_SERVER_RPC_CALLBACK_H_
#define COACH_SERVER_RPC_CALLBACK_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <utility>

#include "absl/functional/any_invocable.h"
#include "base/thread_pool.h"

namespace coach {

class CallRunner {
 public:
  // `pool` null: inline.
  explicit CallRunner(ThreadPool* pool = nullptr) : pool_(pool) {}

  // Runs `work` inline or on the pool. gRPC keeps a call's context, request
  // and response alive until its reactor is done, after Finish.
  void Run(absl::AnyInvocable<void()> work) const {
    if (pool_ == nullptr) {
      work();
    } else {
      pool_->Schedule(std::move(work));
    }
  }

  // Runs `work` (as Run does) and finishes the call with its status.
  grpc::ServerUnaryReactor* Answer(
      grpc::CallbackServerContext* context,
      absl::AnyInvocable<grpc::Status()> work) const {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    Run([reactor, work = std::move(work)]() mutable {
      reactor->Finish(work());
    });
    return reactor;
  }

 private:
  ThreadPool* const pool_;
};

}  // namespace coach

#endif  // COACH_SERVER_RPC_CALLBACK_H_
