#include "server/auth/jwt_verifier.h"

#include <cjose/cjose.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/log.h"

namespace coach {
namespace {

using nlohmann::json;

struct JwkDeleter {
  void operator()(cjose_jwk_t* jwk) const { cjose_jwk_release(jwk); }
};
using JwkPtr = std::unique_ptr<cjose_jwk_t, JwkDeleter>;

struct JwsDeleter {
  void operator()(cjose_jws_t* jws) const { cjose_jws_release(jws); }
};
using JwsPtr = std::unique_ptr<cjose_jws_t, JwsDeleter>;

absl::Status Refused(absl::string_view why) {
  return absl::UnauthenticatedError(absl::StrCat("jwt: ", why));
}

// The kind of key each accepted algorithm is checked with.
struct Algorithm {
  absl::string_view name;
  cjose_jwk_kty_t kty;
};
constexpr Algorithm kAlgorithms[] = {
    {"HS256", CJOSE_JWK_KTY_OCT},
    {"RS256", CJOSE_JWK_KTY_RSA},
    {"ES256", CJOSE_JWK_KTY_EC},
};

const Algorithm* FindAlgorithm(absl::string_view name) {
  for (const Algorithm& algorithm : kAlgorithms) {
    if (algorithm.name == name) return &algorithm;
  }
  return nullptr;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

// A claim holding a NumericDate (seconds since the epoch), if present.
absl::StatusOr<std::optional<absl::Time>> TimeClaim(const json& claims,
                                                    const char* name) {
  if (!claims.contains(name)) return std::nullopt;
  const json& value = claims[name];
  if (!value.is_number()) {
    return Refused(absl::StrCat("claim ", name, " is not a number"));
  }
  return absl::FromUnixSeconds(0) + absl::Seconds(value.get<double>());
}

// Whether the protected header of `token` (its first segment, which cjose
// has already imported) carries `crit` (RFC 7515 §4.1.11). None of the
// extensions a `crit` may list is understood here, so any `crit`, even an
// empty or malformed one, makes the token invalid. Read from the segment
// rather than through cjose's header, which gives arrays and strings but
// not a `crit` of true, null or a number. A header that does not decode
// counts as one with `crit`: refuse rather than guess.
bool HasCrit(absl::string_view token) {
  std::string decoded;
  if (!absl::WebSafeBase64Unescape(token.substr(0, token.find('.')),
                                   &decoded)) {
    return true;
  }
  const json header = json::parse(decoded, nullptr, /*allow_exceptions=*/false);
  return !header.is_object() || header.contains("crit");
}

// The claims of a verified token: its payload, which must be a JSON object.
absl::StatusOr<json> PayloadClaims(cjose_jws_t* jws) {
  cjose_err err;
  uint8_t* payload = nullptr;
  size_t payload_len = 0;
  if (!cjose_jws_get_plaintext(jws, &payload, &payload_len, &err)) {
    return Refused("no payload");
  }
  json claims = json::parse(
      absl::string_view(reinterpret_cast<const char*>(payload), payload_len),
      nullptr, /*allow_exceptions=*/false);
  if (!claims.is_object()) return Refused("claims are not a JSON object");
  return claims;
}

// OK if `exp` is present and `exp`, `nbf` and `iat` allow the token at
// `now` (see the header), else the first claim that refuses it.
absl::Status CheckTimes(const json& claims, const JwtOptions& options,
                        absl::Time now) {
  auto expires = TimeClaim(claims, "exp");
  if (!expires.ok()) return expires.status();
  if (!expires->has_value()) return Refused("no exp claim");
  if (now > **expires + options.leeway) return Refused("expired");
  if (**expires > now + options.max_lifetime + options.leeway) {
    return Refused("exp beyond the maximum lifetime");
  }
  auto not_before = TimeClaim(claims, "nbf");
  if (!not_before.ok()) return not_before.status();
  if (not_before->has_value() && now + options.leeway < **not_before) {
    return Refused("not yet valid");
  }
  auto issued_at = TimeClaim(claims, "iat");
  if (!issued_at.ok()) return issued_at.status();
  if (issued_at->has_value() && now + options.leeway < **issued_at) {
    return Refused("issued in the future");
  }
  return absl::OkStatus();
}

// Whether `aud` (a string, or an array of them) names `audience`.
bool AudienceMatches(const json& claims, const std::string& audience) {
  bool audience_ok = false;
  if (claims.contains("aud")) {
    const json& aud = claims["aud"];
    if (aud.is_string()) audience_ok = aud.get<std::string>() == audience;
    if (aud.is_array()) {
      for (const json& one : aud) {
        audience_ok = audience_ok ||
                      (one.is_string() && one.get<std::string>() == audience);
      }
    }
  }
  return audience_ok;
}

// The token's scopes: `scope` (space-separated), else `scp` (an array).
std::vector<std::string> Scopes(const json& claims) {
  std::vector<std::string> scopes;
  if (claims.contains("scope") && claims["scope"].is_string()) {
    scopes = absl::StrSplit(claims["scope"].get<std::string>(), ' ',
                            absl::SkipEmpty());
  } else if (claims.contains("scp") && claims["scp"].is_array()) {
    for (const json& scope : claims["scp"]) {
      if (scope.is_string()) scopes.push_back(scope.get<std::string>());
    }
  }
  return scopes;
}

// The user and scopes of a token whose signature is good, if its claims
// (times, issuer, audience, user) accept it at `now`; checked in that order.
absl::StatusOr<VerifiedToken> CheckClaims(const json& claims,
                                          const JwtOptions& options,
                                          absl::Time now) {
  if (absl::Status times = CheckTimes(claims, options, now); !times.ok()) {
    return times;
  }
  if (!options.issuer.empty() &&
      !(claims.contains("iss") && claims["iss"].is_string() &&
        claims["iss"].get<std::string>() == options.issuer)) {
    return Refused("wrong issuer");
  }
  if (!options.audience.empty() && !AudienceMatches(claims, options.audience)) {
    return Refused("wrong audience");
  }
  VerifiedToken verified;
  if (!claims.contains(options.user_claim) ||
      !claims[options.user_claim].is_string() ||
      claims[options.user_claim].get<std::string>().empty()) {
    return Refused(absl::StrCat("no user in claim ", options.user_claim));
  }
  verified.user_id = claims[options.user_claim].get<std::string>();
  verified.scopes = Scopes(claims);
  return verified;
}

}  // namespace

// The keys one token may be checked with: kid -> key (the secret has the
// empty kid).
struct JwtVerifier::Keys {
  std::map<std::string, JwkPtr, std::less<>> by_kid;
};

JwtVerifier::JwtVerifier(const JwtOptions& options) : options_(options) {}
JwtVerifier::~JwtVerifier() = default;

absl::StatusOr<std::unique_ptr<JwtVerifier>> JwtVerifier::Create(
    const JwtOptions& options) {
  if (options.hs256_secret.empty() && options.jwks_file.empty()) {
    return absl::InvalidArgumentError(
        "jwt: set a secret (HS256) or a JWKS file (RS256/ES256)");
  }
  std::unique_ptr<JwtVerifier> verifier(new JwtVerifier(options));
  if (!options.hs256_secret.empty()) {
    cjose_err err;
    JwkPtr key(cjose_jwk_create_oct_spec(
        reinterpret_cast<const uint8_t*>(options.hs256_secret.data()),
        options.hs256_secret.size(), &err));
    if (key == nullptr) {
      return absl::InternalError(
          absl::StrCat("jwt: secret key: ", err.message));
    }
    auto keys = std::make_shared<Keys>();
    keys->by_kid.emplace("", std::move(key));
    verifier->secret_ = std::move(keys);
  }
  if (!options.jwks_file.empty()) {
    absl::MutexLock lock(&verifier->mu_);
    if (absl::Status read = verifier->RefreshJwks(/*force=*/true); !read.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("jwt: cannot read the JWKS file ", options.jwks_file,
                       ": ", read.message()));
    }
  }
  return verifier;
}

absl::StatusOr<std::shared_ptr<const JwtVerifier::Keys>> JwtVerifier::ReadJwks(
    const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  const json jwks = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!jwks.is_object() || !jwks.contains("keys") || !jwks["keys"].is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("jwt: ", path, " is not a JWKS ({\"keys\": [...]})"));
  }
  auto keys = std::make_shared<Keys>();
  for (const json& entry : jwks["keys"]) {
    const auto text_of = [&](const char* name) {
      return entry.is_object() && entry.contains(name) &&
                     entry[name].is_string()
                 ? entry[name].get<std::string>()
                 : std::string();
    };
    const std::string kid = text_of("kid");
    const std::string kty = text_of("kty");
    const std::string use = text_of("use");
    const std::string alg = text_of("alg");
    if (kid.empty() || (kty != "RSA" && kty != "EC") ||
        (!use.empty() && use != "sig") ||
        (!alg.empty() && alg != (kty == "RSA" ? "RS256" : "ES256")) ||
        entry.contains("d")) {
      LogWarning(
          "jwt: %s: key \"%s\" skipped (needs a kid, kty RSA or EC, "
          "use sig, alg RS256/ES256, and no private part)",
          path, kid);
      continue;
    }
    const std::string jwk_json = entry.dump();
    cjose_err err;
    JwkPtr key(cjose_jwk_import(jwk_json.data(), jwk_json.size(), &err));
    if (key == nullptr ||
        (kty == "EC" &&
         cjose_jwk_EC_get_curve(key.get(), &err) != CJOSE_JWK_EC_P_256)) {
      LogWarning("jwt: %s: key \"%s\" skipped (%s)", path, kid,
                 key == nullptr ? err.message : "EC keys must be P-256");
      continue;
    }
    keys->by_kid.insert_or_assign(kid, std::move(key));
  }
  return keys;
}

std::shared_ptr<const JwtVerifier::Keys> JwtVerifier::CurrentKeys(
    absl::Time now) {
  absl::MutexLock lock(&mu_);
  // At most one look at the file per interval, whatever the tokens: one
  // naming unknown kids cannot make us read it on every request.
  if (options_.jwks_file.empty() ||
      options_.jwks_check_interval <= absl::ZeroDuration() ||
      now < next_check_) {
    return jwks_;
  }
  next_check_ = now + options_.jwks_check_interval;
  if (absl::Status read = RefreshJwks(/*force=*/false); !read.ok()) {
    LogWarning("jwt: %s; keeping the keys read before", read.message());
  }
  return jwks_;
}

absl::StatusOr<int> JwtVerifier::ReloadJwks() {
  if (options_.jwks_file.empty()) {
    return absl::FailedPreconditionError("jwt: no JWKS file configured");
  }
  absl::MutexLock lock(&mu_);
  if (absl::Status read = RefreshJwks(/*force=*/true); !read.ok()) {
    return read;
  }
  return static_cast<int>(jwks_->by_kid.size());
}

int JwtVerifier::JwksKeyCount() {
  absl::MutexLock lock(&mu_);
  return jwks_ == nullptr ? 0 : static_cast<int>(jwks_->by_kid.size());
}

absl::Status JwtVerifier::RefreshJwks(bool force) {
  struct stat info {};
  if (stat(options_.jwks_file.c_str(), &info) != 0) {
    return absl::NotFoundError(
        absl::StrCat("jwt: ", options_.jwks_file, ": cannot stat"));
  }
  const int64_t mtime_ns =
      int64_t{info.st_mtim.tv_sec} * 1000000000 + info.st_mtim.tv_nsec;
  if (!force && mtime_ns == jwks_mtime_ns_ && info.st_size == jwks_size_) {
    return absl::OkStatus();
  }
  // Read under mu_: an RS256/ES256 verification arriving meanwhile waits
  // for this read of a small file (rare: a change, a reload); one already
  // past its look-up goes on with the keys it took.
  auto keys = ReadJwks(options_.jwks_file);
  if (!keys.ok()) return keys.status();
  jwks_mtime_ns_ = mtime_ns;
  jwks_size_ = info.st_size;
  const bool first = jwks_ == nullptr;
  jwks_ = *std::move(keys);
  if (!first && !force) {
    LogInfo("jwt: %s re-read (%d keys)", options_.jwks_file,
            static_cast<int>(jwks_->by_kid.size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<VerifiedToken> JwtVerifier::Verify(absl::string_view token,
                                                  absl::Time now) {
  if (token.empty()) return Refused("empty token");
  if (token.size() > options_.max_token_bytes) return Refused("token too long");
  cjose_err err;
  JwsPtr jws(cjose_jws_import(token.data(), token.size(), &err));
  if (jws == nullptr) return Refused(absl::StrCat("malformed: ", err.message));
  cjose_header_t* header = cjose_jws_get_protected(jws.get());
  const char* alg_text = header == nullptr
                             ? nullptr
                             : cjose_header_get(header, CJOSE_HDR_ALG, &err);
  const char* kid_text = header == nullptr
                             ? nullptr
                             : cjose_header_get(header, CJOSE_HDR_KID, &err);
  const absl::string_view kid = kid_text == nullptr ? "" : kid_text;
  if (header == nullptr) return Refused("no protected header");
  if (HasCrit(token)) return Refused("crit header not understood");
  const Algorithm* algorithm =
      FindAlgorithm(alg_text == nullptr ? "" : alg_text);
  if (algorithm == nullptr) {
    return Refused(absl::StrCat("algorithm \"",
                                alg_text == nullptr ? "" : alg_text,
                                "\" not accepted"));
  }

  // RFC 7518 §3.4: an ES256 signature is exactly R || S, 64 octets (cjose
  // splits any even length in two, so a zero-padded one would pass).
  if (algorithm->name == "ES256") {
    std::string signature;
    if (!absl::WebSafeBase64Unescape(token.substr(token.rfind('.') + 1),
                                     &signature) ||
        signature.size() != 64) {
      return Refused("bad signature");
    }
  }
  // The key: chosen by the algorithm's family, never by the token alone.
  std::shared_ptr<const Keys> keys;
  const cjose_jwk_t* key = nullptr;
  if (algorithm->kty == CJOSE_JWK_KTY_OCT) {
    if (secret_ == nullptr) return Refused("HS256 without a configured secret");
    keys = secret_;
    key = keys->by_kid.begin()->second.get();
  } else {
    if (kid.empty()) return Refused("asymmetric token without kid");
    // A rotated key is seen within one check interval.
    keys = CurrentKeys(now);
    if (keys == nullptr) return Refused("no JWKS configured");
    const auto found = keys->by_kid.find(kid);
    if (found == keys->by_kid.end()) return Refused("unknown kid");
    key = found->second.get();
    if (cjose_jwk_get_kty(key, &err) != algorithm->kty) {
      return Refused("algorithm does not match the key's type");
    }
  }
  if (!cjose_jws_verify(jws.get(), key, &err)) return Refused("bad signature");

  absl::StatusOr<json> claims = PayloadClaims(jws.get());
  if (!claims.ok()) return claims.status();
  return CheckClaims(*claims, options_, now);
}

}  // namespace coach
