// Signed tokens for tests, minted with cjose (the library the server checks
// them with): HS256 from a secret, RS256/ES256 from generated key pairs whose
// public halves go into a JWKS file.
#ifndef COACH_TESTS_SUPPORT_JWT_TOKENS_H_
#define COACH_TESTS_SUPPORT_JWT_TOKENS_H_

#include <cjose/cjose.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace coach::testing {

// A signing key: an HMAC secret, or a generated RSA / P-256 key pair.
class SigningKey {
 public:
  static SigningKey Hs256(const std::string& secret) {
    cjose_err err;
    return SigningKey("HS256", "",
                      cjose_jwk_create_oct_spec(
                          reinterpret_cast<const uint8_t*>(secret.data()),
                          secret.size(), &err));
  }
  static SigningKey Rs256(const std::string& kid) {
    cjose_err err;
    static const uint8_t kExponent[] = {0x01, 0x00, 0x01};
    return SigningKey(
        "RS256", kid,
        cjose_jwk_create_RSA_random(2048, kExponent, sizeof(kExponent), &err));
  }
  static SigningKey Es256(const std::string& kid) {
    cjose_err err;
    return SigningKey("ES256", kid,
                      cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err));
  }

  const std::string& alg() const { return alg_; }
  const std::string& kid() const { return kid_; }

  // The public half as a JWK (with its kid), for a JWKS.
  nlohmann::json PublicJwk() const {
    cjose_err err;
    char* text = cjose_jwk_to_json(key_.get(), /*priv=*/false, &err);
    nlohmann::json jwk = nlohmann::json::parse(text);
    free(text);
    jwk["kid"] = kid_;
    return jwk;
  }

  // A compact JWS of `claims`; `header` entries (any JSON value) are added
  // and override alg/kid.
  std::string Sign(
      const nlohmann::json& claims,
      const nlohmann::json& header = nlohmann::json::object()) const {
    cjose_err err;
    cjose_header_t* h = cjose_header_new(&err);
    nlohmann::json full = {{"alg", alg_}, {"typ", "JWT"}};
    if (!kid_.empty()) full["kid"] = kid_;
    full.update(header);
    for (const auto& [name, value] : full.items()) {
      if (value.is_string()) {
        cjose_header_set(h, name.c_str(), value.get<std::string>().c_str(),
                         &err);
      } else {  // e.g. crit, an array
        cjose_header_set_raw(h, name.c_str(), value.dump().c_str(), &err);
      }
    }
    const std::string payload = claims.dump();
    cjose_jws_t* jws = cjose_jws_sign(
        key_.get(), h, reinterpret_cast<const uint8_t*>(payload.data()),
        payload.size(), &err);
    cjose_header_release(h);
    if (jws == nullptr) throw std::runtime_error(err.message);
    const char* compact = nullptr;
    cjose_jws_export(jws, &compact, &err);
    std::string token = compact;
    cjose_jws_release(jws);
    return token;
  }

 private:
  struct Release {
    void operator()(cjose_jwk_t* k) const { cjose_jwk_release(k); }
  };
  SigningKey(std::string alg, std::string kid, cjose_jwk_t* key)
      : alg_(std::move(alg)), kid_(std::move(kid)), key_(key, Release()) {}

  std::string alg_;
  std::string kid_;
  std::shared_ptr<cjose_jwk_t> key_;
};

// Writes {"keys": [...]} with the public halves of `keys`.
inline void WriteJwks(const std::string& path,
                      const std::vector<const SigningKey*>& keys) {
  nlohmann::json jwks = {{"keys", nlohmann::json::array()}};
  for (const SigningKey* key : keys) jwks["keys"].push_back(key->PublicJwk());
  std::ofstream(path, std::ios::trunc) << jwks.dump();
}

// Claims valid from `now` for an hour, for `user`.
inline nlohmann::json ClaimsFor(const std::string& user, absl::Time now) {
  return {{"sub", user},
          {"iat", absl::ToUnixSeconds(now)},
          {"exp", absl::ToUnixSeconds(now + absl::Hours(1))}};
}

// An HS256 token whose protected header is `header` exactly (any JSON
// text, e.g. {"alg":"HS256","crit":true}: cjose's header setters take only
// strings, arrays and objects). The MAC is OpenSSL's HMAC-SHA256.
inline std::string Hs256WithRawHeader(const std::string& secret,
                                      const std::string& header,
                                      const nlohmann::json& claims) {
  const std::string signing_input =
      absl::StrCat(absl::WebSafeBase64Escape(header), ".",
                   absl::WebSafeBase64Escape(claims.dump()));
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(signing_input.data()),
       signing_input.size(), mac, &mac_size);
  return absl::StrCat(signing_input, ".",
                      absl::WebSafeBase64Escape(absl::string_view(
                          reinterpret_cast<const char*>(mac), mac_size)));
}

// An unsigned token (`alg: none`), as an attacker would send it.
inline std::string UnsignedToken(const nlohmann::json& claims) {
  const nlohmann::json header = {{"alg", "none"}, {"typ", "JWT"}};
  return absl::StrCat(absl::WebSafeBase64Escape(header.dump()), ".",
                      absl::WebSafeBase64Escape(claims.dump()), ".");
}

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_JWT_TOKENS_H_
