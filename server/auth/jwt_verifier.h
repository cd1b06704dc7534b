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
// Header: a `crit` parameter (RFC 7515 §4.1.11) is refused whatever it
// lists: this verifier understands no extension, and a recipient must refuse
// a token whose critical extensions it does not understand.
//
// Claims: `exp` is required, and refused past `leeway` behind the clock or
// further ahead than `max_lifetime` (+ `leeway`): a token minted to last for
// ever is refused, not trusted for ever. `nbf` and `iat`, when present, are
// refused further ahead than `leeway` (a token from the future was minted by
// a clock that is wrong, or to outlive a revocation). Each time claim must
// be a number. `iss` and `aud` must match when configured; the user is the
// string claim `user_claim` ("sub" by default). `scope` (space-separated) or
// `scp` (an array) gives the token's scopes.
//
// The JWKS file is read at start, and again:
//   - when it changes (its mtime and size looked at, at most once per
//     `jwks_check_interval`, on a token that needs it): a rotated key is
//     accepted within that interval; a zero interval turns this off;
//   - at once on ReloadJwks() (coach-server calls it on SIGHUP).
// A file that cannot be read or parsed keeps the keys read before (a warning
// in the log; ReloadJwks returns the error).
//
// Thread-safe: Verify may run on any number of threads while another calls
// ReloadJwks or the file changes. The keys are an immutable snapshot
// (shared_ptr<const Keys>); a re-read builds a new one and swaps the pointer
// under `mu_`, held while the (small) file is read and swapped, never while
// a signature is checked. A verification that already took a snapshot
// finishes with it; the old keys are freed when the last such verification
// ends. cjose's key objects are never modified once imported, so several
// threads check signatures with one key at once.
//
// Errors are UNAUTHENTICATED with a detail meant for logs, never containing
// the token.
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
  // Allowed clock difference with the issuer, for exp, nbf and iat.
  absl::Duration leeway = absl::Seconds(30);
  // The furthest ahead an `exp` may be (then + leeway): the longest a token
  // may still be valid.
  absl::Duration max_lifetime = absl::Hours(24);
  // Checked when not empty.
  std::string issuer;
  std::string audience;
  // The claim that names the user.
  std::string user_claim = "sub";
  // Longest token accepted, in bytes (before any decoding).
  size_t max_token_bytes = 8192;
  // How often, at most, the JWKS file is looked at for a change; zero: only
  // at start and on ReloadJwks().
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
  absl::StatusOr<VerifiedToken> Verify(absl::string_view token, absl::Time now);

  // Re-reads the JWKS file now, changed or not, and makes its keys the ones
  // in use: the number of keys read. On failure (unreadable file, not a
  // JWKS) the error, and the keys read before stay in use.
  // FAILED_PRECONDITION when no JWKS file is configured. Any thread.
  absl::StatusOr<int> ReloadJwks();
  // The number of JWKS keys in use (0 without a JWKS file). Any thread.
  int JwksKeyCount();

 private:
  struct Keys;
  explicit JwtVerifier(const JwtOptions& options);

  // Reads and parses the JWKS file: RSA and P-256 EC public keys with a
  // kid; other entries are skipped with a warning.
  static absl::StatusOr<std::shared_ptr<const Keys>> ReadJwks(
      const std::string& path);
  // Re-reads the JWKS file if its identity changed since the last read, or
  // whatever its identity when `force`; OK with the keys read (or unchanged),
  // else the error, the keys read before kept.
  absl::Status RefreshJwks(bool force) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

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
