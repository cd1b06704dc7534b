// JwtVerifier: proves who calls, from a signed JSON Web Token (RFC 7519) in
// compact JWS form. Signatures are checked by cjose (Debian's libcjose); this
// class only chooses the key and checks the claims.
//
// Accepted algorithms, each bound to one kind of key, so that the token's
// header cannot choose a weaker check:
//   HS256 -> the shared secret (JwtOptions::hs256_secret), if one is set;
//   RS256 -> an RSA key, ES256 -> a P-256 key, from the JWKS file, by `kid`.
// A JWKS never supplies a symmetric key: a public key can never be used as
// an HMAC secret (the HS/RS confusion). `alg: none`, any other algorithm, an
// unknown `kid`, and anything malformed are refused.
//
// Claims: `exp` is required and `nbf` honoured, both with `leeway`; `iss` and
// `aud` must match when configured; the user is the string claim
// `user_claim` ("sub" by default). `scope` (space-separated) or `scp` (an
// array) gives the token's scopes.
//
// The JWKS file is re-read when it changes (its mtime and size looked at,
// at most once per `jwks_check_interval`): a rotated key is accepted within
// that interval. A file that cannot be read or parsed
// keeps the keys read before, with a warning in the log.
//
// Thread-safe. Errors are UNAUTHENTICATED with a detail meant for logs,
// never containing the token.
#ifndef COACH_SERVER_AUTH_JWT_VERIFIER_H_
#define COACH_SERVER_AUTH_JWT_VERIFIER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace coach {

struct JwtOptions {
  // HS256 secret; empty: HS256 tokens are refused.
  std::string hs256_secret;
  // A JWKS (RFC 7517 {"keys": [...]}) of RSA and EC public keys; empty: none.
  std::string jwks_file;
  // Allowed clock difference with the issuer, for exp and nbf.
  absl::Duration leeway = absl::Seconds(30);
  // Checked when not empty.
  std::string issuer;
  std::string audience;
  // The claim that names the user.
  std::string user_claim = "sub";
  // Longest token accepted, in bytes (before any decoding).
  size_t max_token_bytes = 8192;
  absl::Duration jwks_check_interval = absl::Seconds(1);
};

struct VerifiedToken {
  std::string user_id;
  std::vector<std::string> scopes;
};

class JwtVerifier {
 public:
  // INVALID_ARGUMENT if neither a secret nor a JWKS file is given, or if the
  // JWKS file cannot be read at start.
  static absl::StatusOr<std::unique_ptr<JwtVerifier>> Create(
      const JwtOptions& options);
  ~JwtVerifier();

  JwtVerifier(const JwtVerifier&) = delete;
  JwtVerifier& operator=(const JwtVerifier&) = delete;

  // The token's user and scopes if it is valid at `now`.
  absl::StatusOr<VerifiedToken> Verify(absl::string_view token,
                                       absl::Time now);

 private:
  struct Keys;
  explicit JwtVerifier(const JwtOptions& options);

  // Reads and parses the JWKS file: RSA and P-256 EC public keys with a
  // kid; other entries are skipped with a warning.
  static absl::StatusOr<std::shared_ptr<const Keys>> ReadJwks(
      const std::string& path);
  // Re-reads the JWKS file if its identity changed since the last read.
  void RefreshJwks() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The JWKS keys, re-read first if the file changed and `now` is past the
  // next check.
  std::shared_ptr<const Keys> CurrentKeys(absl::Time now);

  const JwtOptions options_;
  // The shared secret as a cjose key (null when none); immutable.
  std::shared_ptr<const Keys> secret_;

  absl::Mutex mu_;
  std::shared_ptr<const Keys> jwks_ ABSL_GUARDED_BY(mu_);
  // The file's identity when last read (mtime in ns, size).
  int64_t jwks_mtime_ns_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t jwks_size_ ABSL_GUARDED_BY(mu_) = -1;
  absl::Time next_check_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace coach

#endif  // COACH_SERVER_AUTH_JWT_VERIFIER_H_
