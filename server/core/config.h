// Config: every setting of coach-server in one place, with its default.
// server/app/server_flags.cc exposes each one as a flag and an environment variable;
// nothing else in the server hard-codes a limit, a port, a plan or a model.
#ifndef COACH_SERVER_CORE_CONFIG_H_
#define COACH_SERVER_CORE_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace coach {

// Input limits. Lengths count characters (Unicode code points), as a user
// would, not bytes.
struct Limits {
  int max_user_id_length = 128;
  int max_session_id_length = 64;
  int max_message_length = 4000;
  int max_title_length = 200;
  // A session started by a send is titled from its first message, cut here.
  int auto_title_length = 60;
  // `lastMessage` and `preview` are the last message, cut here.
  int preview_length = 120;
  // GetHistory's `limit` when absent, and its cap.
  int history_default_limit = 50;
  int history_max_limit = 100;
  // ListSessions returns at most this many sessions (newest first).
  int max_sessions_listed = 500;
  // GetSession returns at most this many messages (the newest).
  int max_messages_per_session = 1000;
  // How many of the newest messages the coach sees as context.
  int coach_context_messages = 20;
  // GrantCredits adds at most this many credits at once (a typo guard).
  int max_credit_grant = 10000;
  // No balance grows past this, however many grants add up: it stays far
  // inside the 32-bit counts of the API.
  int max_credit_balance = 1000000;
};

// Monthly credits per plan; PREMIUM is unlimited.
struct PlanCredits {
  int32_t free_monthly_credits = 5;
  int32_t basic_monthly_credits = 50;
};

// The OpenAI chat-completions coach, used when `api_key` is set. Defaults
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
  // "http://host:port" of an egress proxy; empty: connect directly. The
  // http_proxy/HTTPS_PROXY variables are ignored: the requests carry the API
  // key, and go through a proxy only when configured to.
  std::string proxy;
  // Threads that hand replies back to the server, which stores each with one
  // SQLite write (one writer at a time: more threads would only queue).
  // They keep a slow write from holding up the AI client's I/O.
  int reply_threads = 4;
};

struct Config {
  std::string db_path = "coach.db";
  // Loopback by default: the proxy runs beside the server. Listen on
  // 0.0.0.0:50051 to serve other hosts.
  std::string grpc_listen = "127.0.0.1:50051";
  // Sends run at once on their own threads when the coach blocks inside
  // StartReply; more wait their turn. Neither built-in coach blocks (the AI
  // client is asynchronous): this bounds threads for one that would.
  int max_blocking_sends = 1024;
  // Concurrent calls per client connection (HTTP/2 streams).
  int grpc_max_concurrent_streams = 4096;
  // Empty: the admin RPCs are refused.
  std::string admin_token;
  OpenAiOptions openai;

  Limits limits;
  PlanCredits plans;

  // In-flight calls get this long to finish on SIGTERM/SIGINT.
  absl::Duration shutdown_grace = absl::Seconds(10);
  // A credit reserved for a send is released after this even if the server
  // died mid-send. Longer than any coach reply may take.
  absl::Duration credit_reservation_ttl = absl::Minutes(5);
  int sqlite_busy_timeout_ms = 5000;
  int sqlite_reader_connections = 4;
};

}  // namespace coach

#endif  // COACH_SERVER_CORE_CONFIG_H_
