#include "http/event_loop.h"

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

namespace coach::http {

namespace net = boost::asio;

struct EventLoop::Work {
  explicit Work(net::io_context& context)
      : guard(net::make_work_guard(context)) {}
  net::executor_work_guard<net::io_context::executor_type> guard;
};

EventLoop::EventLoop(int threads)
    : context_(std::make_unique<net::io_context>(std::max(1, threads))),
      work_(std::make_unique<Work>(*context_)) {
  for (int i = 0; i < std::max(1, threads); ++i) {
    threads_.emplace_back([this] { context_->run(); });
  }
}

EventLoop::~EventLoop() { Stop(); }

void EventLoop::Stop() {
  work_.reset();
  // Owners ended their work first; a stray timer must not hold the join.
  context_->stop();
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

}  // namespace coach::http
