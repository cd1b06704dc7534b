#include "server/coach/openai_stream.h"

#include <nlohmann/json.hpp>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/core/errors.h"

namespace coach {
namespace {

using nlohmann::json;

std::string StringAt(const json& object, const char* key) {
  return object.contains(key) && object[key].is_string()
             ? object[key].get<std::string>()
             : std::string();
}

}  // namespace

std::optional<TokenUsage> UsageIn(const json& parent) {
  if (!parent.contains("usage") || !parent["usage"].is_object()) {
    return std::nullopt;
  }
  const json& usage = parent["usage"];
  if (!usage.contains("prompt_tokens") ||
      !usage["prompt_tokens"].is_number_integer() ||
      !usage.contains("completion_tokens") ||
      !usage["completion_tokens"].is_number_integer()) {
    return std::nullopt;
  }
  return TokenUsage{
      .prompt_tokens = usage["prompt_tokens"].get<int32_t>(),
      .completion_tokens = usage["completion_tokens"].get<int32_t>()};
}

OpenAiStream::OpenAiStream(size_t max_line_bytes, size_t max_text_bytes)
    : max_line_bytes_(max_line_bytes), max_text_bytes_(max_text_bytes) {}

absl::Status OpenAiStream::Feed(
    absl::string_view bytes,
    absl::FunctionRef<void(absl::string_view)> on_piece) {
  while (error_.ok() && !bytes.empty()) {
    if (skip_lf_) {
      skip_lf_ = false;
      if (bytes.front() == '\n') {
        bytes.remove_prefix(1);
        continue;
      }
    }
    const size_t end = bytes.find_first_of("\r\n");
    const absl::string_view part = bytes.substr(0, end);
    if (line_.size() + part.size() > max_line_bytes_) {
      error_ = absl::InternalError(absl::StrCat("OpenAI: a stream line over ",
                                                max_line_bytes_, " bytes"));
      break;
    }
    if (end == absl::string_view::npos) {
      line_.append(part.data(), part.size());
      break;
    }
    skip_lf_ = bytes[end] == '\r';
    bytes.remove_prefix(end + 1);
    if (line_.empty()) {
      error_ = Line(part, on_piece);
    } else {
      line_.append(part.data(), part.size());
      std::string line = std::move(line_);
      line_.clear();
      error_ = Line(line, on_piece);
    }
  }
  return error_;
}

absl::Status OpenAiStream::Line(
    absl::string_view line,
    absl::FunctionRef<void(absl::string_view)> on_piece) {
  if (line.empty()) return Event(on_piece);  // a blank line ends an event
  if (line.front() == ':') return absl::OkStatus();  // a comment
  const size_t colon = line.find(':');
  const absl::string_view field = line.substr(0, colon);
  absl::string_view value =
      colon == absl::string_view::npos ? "" : line.substr(colon + 1);
  if (absl::StartsWith(value, " ")) value.remove_prefix(1);
  // event:, id:, retry: say nothing a chat completion needs.
  if (field != "data") return absl::OkStatus();
  if (data_.size() + value.size() + 1 > max_line_bytes_) {
    return absl::InternalError(absl::StrCat("OpenAI: a stream event over ",
                                            max_line_bytes_, " bytes"));
  }
  if (has_data_) data_.push_back('\n');
  data_.append(value.data(), value.size());
  has_data_ = true;
  return absl::OkStatus();
}

absl::Status OpenAiStream::Event(
    absl::FunctionRef<void(absl::string_view)> on_piece) {
  if (!has_data_) return absl::OkStatus();
  std::string data = std::move(data_);
  data_.clear();
  has_data_ = false;
  if (done_) return absl::OkStatus();  // nothing counts after [DONE]
  if (data == "[DONE]") {
    done_ = true;
    return absl::OkStatus();
  }
  return Chunk(data, on_piece);
}

absl::Status OpenAiStream::Chunk(
    absl::string_view data,
    absl::FunctionRef<void(absl::string_view)> on_piece) {
  const json chunk = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (!chunk.is_object()) {
    return absl::InternalError("OpenAI: a stream chunk that is not an object");
  }
  if (chunk.contains("error") && !chunk["error"].is_null()) {
    const json& e = chunk["error"];
    const json none = json::object();
    const json& fields = e.is_object() ? e : none;
    error_code_ = StringAt(fields, "code");
    // Read for the retry rule only: a provider may echo the key in any of
    // its fields, so none of its text is logged or returned.
    return absl::UnavailableError("OpenAI: an error object in the stream");
  }
  if (model_.empty()) model_ = StringAt(chunk, "model");
  if (std::optional<TokenUsage> usage = UsageIn(chunk); usage.has_value()) {
    usage_ = usage;
  }
  if (!chunk.contains("choices") || !chunk["choices"].is_array()) {
    return absl::InternalError("OpenAI: a stream chunk without choices");
  }
  // The usage chunk has none; others have the one choice we asked for.
  for (const json& choice : chunk["choices"]) {
    if (!choice.is_object()) {
      return absl::InternalError("OpenAI: a stream choice not an object");
    }
    if (choice.contains("index") && choice["index"] != 0) continue;
    const std::string finish_reason = StringAt(choice, "finish_reason");
    if (!finish_reason.empty()) finish_reason_ = finish_reason;
    if (finish_reason == "content_filter") return ContentFilteredError();
    if (!choice.contains("delta") || !choice["delta"].is_object()) continue;
    const json& delta = choice["delta"];
    // A model may refuse instead of answering.
    if (!StringAt(delta, "refusal").empty()) return ContentFilteredError();
    const std::string piece = StringAt(delta, "content");
    if (piece.empty()) continue;
    if (text_.size() + piece.size() > max_text_bytes_) {
      return absl::InternalError(absl::StrCat("OpenAI: a streamed reply over ",
                                              max_text_bytes_, " bytes"));
    }
    text_ += piece;
    on_piece(piece);
  }
  return absl::OkStatus();
}

absl::StatusOr<CoachReply> OpenAiStream::Finish(
    absl::string_view default_model) {
  // An event must end with a blank line (SSE); a server that ends its body
  // right after "data: [DONE]\n" has still said it.
  if (has_data_ && data_ == "[DONE]") done_ = true;
  if (!error_.ok()) return error_;
  if (!done_) {
    return absl::UnavailableError("OpenAI: the stream ended before [DONE]");
  }
  if (text_.empty()) {
    return absl::InternalError("OpenAI: a stream without text content");
  }
  CoachReply reply;
  reply.content = std::move(text_);
  reply.model = model_.empty() ? std::string(default_model) : model_;
  reply.usage = usage_;
  return reply;
}

}  // namespace coach
