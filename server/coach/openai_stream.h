// OpenAiStream: reads a streamed chat completion as it arrives. With
// `"stream": true` the API answers Server-Sent Events: `data: {json}` lines
// of chat.completion.chunk objects, each carrying a piece of the text in
// choices[0].delta.content, then (with stream_options.include_usage) a chunk
// with empty choices and the usage, then `data: [DONE]`. A provider error in
// the middle comes as a `data:` object with an `error` key. A stream cut
// before [DONE] is a failed reply, whatever came before.
//
// Bytes may be split anywhere (inside a line, between \r and \n): Feed takes
// them as they come. Lines are bounded: a line over `max_line_bytes` is
// nonsense (INTERNAL), never buffered further. Not thread-safe: one stream,
// fed by one thread at a time.
#ifndef COACH_SERVER_COACH_OPENAI_STREAM_H_
#define COACH_SERVER_COACH_OPENAI_STREAM_H_

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <optional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/coach.h"

namespace coach {

// The `usage` of a completion or of a stream's last chunk (`parent`'s
// "usage" object), if it has both token counts.
std::optional<TokenUsage> UsageIn(const nlohmann::json& parent);

class OpenAiStream {
 public:
  // `max_line_bytes` bounds one line (and one event's data); `max_text_bytes`
  // the reply's text.
  OpenAiStream(size_t max_line_bytes, size_t max_text_bytes);

  // Reads `bytes`, giving each non-empty piece of text to `on_piece` as soon
  // as its chunk is complete. Not OK: the stream is unusable, and every later
  // call says so again: INTERNAL (a line over the bound, a chunk that is not
  // a JSON object, text over the bound), CONTENT_FILTERED (finish_reason
  // content_filter, or a refusal), UNAVAILABLE (an error object; its code is
  // error_code()).
  absl::Status Feed(absl::string_view bytes,
                    absl::FunctionRef<void(absl::string_view)> on_piece);

  // Once the body is over: the reply (its content is the pieces given,
  // concatenated; model and usage as the chunks said), or why there is none:
  // Feed's error, UNAVAILABLE if the stream ended before [DONE], INTERNAL if
  // it held no text at all.
  absl::StatusOr<CoachReply> Finish(absl::string_view default_model);

  // Feed's error, if any (OK while the stream is usable).
  const absl::Status& error() const { return error_; }
  // [DONE] was read: the reply is whole, whatever follows (or does not).
  bool done() const { return done_; }
  // The `code` of a provider error object ("" if none).
  const std::string& error_code() const { return error_code_; }
  // finish_reason was "length": the reply was cut at max_tokens.
  bool cut_at_max_tokens() const { return finish_reason_ == "length"; }

 private:
  absl::Status Line(absl::string_view line,
                    absl::FunctionRef<void(absl::string_view)> on_piece);
  absl::Status Event(absl::FunctionRef<void(absl::string_view)> on_piece);
  absl::Status Chunk(absl::string_view data,
                     absl::FunctionRef<void(absl::string_view)> on_piece);

  const size_t max_line_bytes_;
  const size_t max_text_bytes_;
  absl::Status error_;
  std::string line_;      // the line being read
  bool skip_lf_ = false;  // the last line ended with \r
  std::string data_;      // the event being read: its data lines
  bool has_data_ = false;
  bool done_ = false;  // [DONE] read
  std::string text_;
  std::string model_;
  std::optional<TokenUsage> usage_;
  std::string finish_reason_;
  std::string error_code_;
};

}  // namespace coach

#endif  // COACH_SERVER_COACH_OPENAI_STREAM_H_
