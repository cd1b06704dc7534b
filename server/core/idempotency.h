// Idempotency keys, the domain's side (the store keeps them: store.h): a
// send retried with the same Idempotency-Key runs at most once, and its
// retries get the response it gave.
//
// KeyClaim: a key claimed for a send, as a value that cannot leak: move-only,
// and released (the key free again) when destroyed unless completed, i.e.
// the send's response stored with the key (in the exchange's transaction, or
// for an error worth replaying by Complete). A failed release is only
// logged: the claim expires on its own (CoreConfig::credit_reservation_ttl)
// or when its server restarts (Store::BeginRun). Not thread-safe: one send
// owns it at a time.
#ifndef COACH_SERVER_CORE_IDEMPOTENCY_H_
#define COACH_SERVER_CORE_IDEMPOTENCY_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/records.h"
#include "storage/store.h"

namespace coach {

struct SendResult;

// The fingerprint of a send for its key: SHA-256 over the request's fields
// as given (the session, the message), unambiguously framed. The user is
// the key's scope, not part of the request.
std::string SendRequestHash(absl::string_view session_id,
                            absl::string_view message);

// The stored form of a send's successful response (remaining credits
// apart: the store keeps them), and back.
std::string EncodeSendResponse(absl::string_view session_id,
                               const MessageRecord& user_message,
                               const MessageRecord& assistant_message);
// The errors worth replaying to a retry: those the same request would meet
// again (SESSION_NOT_FOUND, SESSION_FORBIDDEN, CONTENT_FILTERED). The rest
// are transient, or end with the user's action (NO_CREDITS after an
// upgrade): their key is released and the retry runs.
bool IsReplayableError(const absl::Status& status);
std::string EncodeSendError(const absl::Status& status);
// A stored response as the send's outcome, marked as a replay (SendResult::
// replayed, or MarkReplayed on an error). INTERNAL if unreadable.
absl::StatusOr<SendResult> DecodeSendResponse(const StoredResponse& stored);

class KeyClaim {
 public:
  KeyClaim() = default;
  // `store` must outlive the claim.
  KeyClaim(Store& store, std::string user_id, std::string key,
           std::string claim_id)
      : store_(&store),
        user_id_(std::move(user_id)),
        key_(std::move(key)),
        claim_id_(std::move(claim_id)) {}
  KeyClaim(KeyClaim&& other) noexcept;
  KeyClaim& operator=(KeyClaim&& other) noexcept;
  KeyClaim(const KeyClaim&) = delete;
  KeyClaim& operator=(const KeyClaim&) = delete;
  ~KeyClaim() { Release(); }

  bool held() const { return store_ != nullptr; }
  // What the exchange's commit completes the key with; nullopt when no key
  // is held.
  std::optional<IdempotencyCompletion> Completion(std::string response) const;
  // The exchange's commit completed the key: nothing is left to release.
  void Consume() { store_ = nullptr; }
  // Ends the send's claim with `status`: stored for its retries if it is
  // worth replaying (IsReplayableError), the key released otherwise.
  // Returns `status`.
  absl::Status Settle(absl::Status status);
  // Frees the key now, if it is still held.
  void Release();

 private:
  Store* store_ = nullptr;
  std::string user_id_;
  std::string key_;
  std::string claim_id_;
};

}  // namespace coach

#endif  // COACH_SERVER_CORE_IDEMPOTENCY_H_
