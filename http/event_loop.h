// http::EventLoop: an Asio io_context and the threads that run it, for
// parts that share one loop (coach-proxy's HTTP server and its gRPC client,
// so that a request and its call never change threads).
//
// Thread-safety: context() is safe from any thread; Stop() must not run on
// the loop's own threads.
#ifndef COACH_HTTP_EVENT_LOOP_H_
#define COACH_HTTP_EVENT_LOOP_H_

#include <memory>
#include <thread>
#include <vector>

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace coach::http {

class EventLoop {
 public:
  // Starts `threads` threads (at least 1) running the loop until Stop().
  explicit EventLoop(int threads);
  // Stop().
  ~EventLoop();

  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  boost::asio::io_context& context() { return *context_; }
  int threads() const { return static_cast<int>(threads_.size()); }

  // Stops the loop and joins its threads: whoever posted work must have
  // ended it (closed its sockets, cancelled its timers) first; handlers
  // still queued are dropped. Idempotent.
  void Stop();

 private:
  struct Work;
  std::unique_ptr<boost::asio::io_context> context_;
  std::unique_ptr<Work> work_;
  std::vector<std::thread> threads_;
};

}  // namespace coach::http

#endif  // COACH_HTTP_EVENT_LOOP_H_
