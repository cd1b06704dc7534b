// OpenAiOptions: the settings of the OpenAI chat-completions coach, with
// their defaults.
#ifndef COACH_SERVER_COACH_OPENAI_OPTIONS_H_
#define COACH_SERVER_COACH_OPENAI_OPTIONS_H_

#include <string>

#include "absl/time/time.h"

namespace coach {

// Used when `api_key` is set. Defaults
// are the API page's (model, max tokens, temperature) and the official SDKs'
// (base URL, connect timeout, 2 retries with exponential backoff).
struct OpenAiOptions {
  // Empty: the offline coach answers. Never logged, never stored.
  std::string api_key;
  // Any OpenAI-compatible server (a gateway, a local model server).
  std::string base_url = "https://api.openai.com/v1";
  std::string model = "gpt-4o-mini";
  int max_tokens = 1000;
  double temperature = 0.7;
  absl::Duration connect_timeout = absl::Seconds(5);
  // The whole reply, retries and their waits included. Below coach-proxy's
  // upstream deadline (60 s), so that the user gets our answer, not the
  // proxy's 504.
  absl::Duration timeout = absl::Seconds(45);
  int max_retries = 2;
  // Backoff before retry n (1-based): base * 2^(n-1), capped, with jitter.
  absl::Duration retry_base_delay = absl::Milliseconds(500);
  absl::Duration retry_max_delay = absl::Seconds(8);
  // A Retry-After longer than this is not waited for (the SDKs' bound).
  absl::Duration max_retry_after = absl::Seconds(60);
  // Tokens of context sent: system prompt + history (newest kept) + the new
  // message, estimated conservatively. gpt-4o-mini reads far more; the budget
  // bounds cost and latency.
  int context_token_budget = 8000;
  // Idle keep-alive connections kept to the API.
  int max_idle_connections = 16;
  // A larger answer is abandoned, not buffered: a reply of max_tokens is a
  // few kilobytes of JSON.
  int max_answer_bytes = 1 << 20;
  // A streamed reply (StreamMessage) is read line by line as it comes: a
  // longer line is nonsense and ends the reply (INTERNAL) instead of being
  // buffered. A chunk of OpenAI's stream is a few hundred bytes. The streamed
  // reply's text is bounded by max_answer_bytes.
  int max_stream_line_bytes = 64 << 10;
  // "http://host:port" of an egress proxy; empty: connect directly. The
  // http_proxy/HTTPS_PROXY variables are ignored: the requests carry the API
  // key, and go through a proxy only when configured to.
  std::string proxy;
  // Threads that hand replies back to the server, which stores each with one
  // SQLite write (one writer at a time: more threads would only queue).
  // They keep a slow write from holding up the AI client's I/O.
  int reply_threads = 4;
};

}  // namespace coach

#endif  // COACH_SERVER_COACH_OPENAI_OPTIONS_H_
