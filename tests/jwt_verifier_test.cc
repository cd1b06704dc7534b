// JwtVerifier against tokens minted by cjose: each accepted shape once, and
// every way a token must be refused (the bad-token table of issue 11).
#include "server/auth/jwt_verifier.h"

#include <gtest/gtest.h>

#include "tests/support/jwt_tokens.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_clock.h"

namespace coach::testing {
namespace {

using nlohmann::json;

constexpr char kSecret[] = "a-test-secret-of-32-bytes-or-more!!";

class JwtVerifierTest : public ::testing::Test {
 protected:
  JwtVerifierTest() { WriteJwks(jwks_path_, {&rsa_, &ec_}); }

  std::unique_ptr<JwtVerifier> Verifier(JwtOptions options) {
    auto verifier = JwtVerifier::Create(options);
    EXPECT_TRUE(verifier.ok()) << verifier.status();
    return verifier.ok() ? *std::move(verifier) : nullptr;
  }
  JwtOptions Both() {
    JwtOptions options;
    options.hs256_secret = kSecret;
    options.jwks_file = jwks_path_;
    return options;
  }

  TempDir dir_;
  const std::string jwks_path_ = dir_.File("jwks.json");
  const absl::Time now_ = MidNovember2026();
  const SigningKey hs_ = SigningKey::Hs256(kSecret);
  // Generated once for the whole suite (RSA key generation is slow).
  static inline const SigningKey rsa_ = SigningKey::Rs256("rsa-1");
  static inline const SigningKey ec_ = SigningKey::Es256("ec-1");
};

TEST_F(JwtVerifierTest, AcceptsEachAlgorithmWithItsKey) {
  auto verifier = Verifier(Both());
  for (const SigningKey* key : {&hs_, &rsa_, &ec_}) {
    auto verified = verifier->Verify(key->Sign(ClaimsFor("alice", now_)), now_);
    ASSERT_TRUE(verified.ok()) << key->alg() << ": " << verified.status();
    EXPECT_EQ(verified->user_id, "alice");
  }
}

TEST_F(JwtVerifierTest, UserComesFromTheConfiguredClaimAndScopesAreRead) {
  JwtOptions options = Both();
  options.user_claim = "email";
  auto verifier = Verifier(options);
  json claims = ClaimsFor("ignored", now_);
  claims["email"] = "alice@example.org";
  claims["scope"] = "chat admin";
  auto verified = verifier->Verify(hs_.Sign(claims), now_);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->user_id, "alice@example.org");
  EXPECT_EQ(verified->scopes, (std::vector<std::string>{"chat", "admin"}));
}

TEST_F(JwtVerifierTest, ExpAndNbfHonourTheLeeway) {
  JwtOptions options = Both();
  options.leeway = absl::Seconds(30);
  auto verifier = Verifier(options);
  json claims = ClaimsFor("alice", now_);
  claims["exp"] = absl::ToUnixSeconds(now_ - absl::Seconds(20));
  EXPECT_TRUE(verifier->Verify(hs_.Sign(claims), now_).ok());
  claims["exp"] = absl::ToUnixSeconds(now_ - absl::Seconds(40));
  EXPECT_TRUE(absl::IsUnauthenticated(
      verifier->Verify(hs_.Sign(claims), now_).status()));
  claims = ClaimsFor("alice", now_);
  claims["nbf"] = absl::ToUnixSeconds(now_ + absl::Seconds(20));
  EXPECT_TRUE(verifier->Verify(hs_.Sign(claims), now_).ok());
  claims["nbf"] = absl::ToUnixSeconds(now_ + absl::Seconds(40));
  EXPECT_TRUE(absl::IsUnauthenticated(
      verifier->Verify(hs_.Sign(claims), now_).status()));
}

struct BadToken {
  const char* name;
  // Why it is refused, as the detail (for logs) says.
  const char* why;
  // The token, from the test's keys.
  std::function<std::string(const JwtVerifierTest&, absl::Time)> make;
};

class JwtBadTokenTest : public JwtVerifierTest,
                        public ::testing::WithParamInterface<BadToken> {
 public:
  // For the table: the test's keys.
  const SigningKey& hs() const { return hs_; }
  const SigningKey& rsa() const { return rsa_; }
  const SigningKey& ec() const { return ec_; }
};

TEST_P(JwtBadTokenTest, IsRefused) {
  JwtOptions options = Both();
  options.issuer = "https://issuer.example";
  options.audience = "coach-ai-hub";
  auto verifier = Verifier(options);
  const std::string token = GetParam().make(*this, now_);
  const auto verified = verifier->Verify(token, now_);
  EXPECT_TRUE(absl::IsUnauthenticated(verified.status()))
      << GetParam().name << ": " << verified.status();
  EXPECT_NE(verified.status().message().find(GetParam().why),
            std::string::npos)
      << GetParam().name << ": " << verified.status();
  // The detail is for logs: it never echoes the token.
  if (token.size() > 8) {
    EXPECT_EQ(verified.status().message().find(token), std::string::npos);
  }
}

json Good(absl::Time now) {
  json claims = ClaimsFor("alice", now);
  claims["iss"] = "https://issuer.example";
  claims["aud"] = json::array({"other", "coach-ai-hub"});
  return claims;
}

const BadToken kBadTokens[] = {
    {"Missing", "empty token", [](const JwtVerifierTest&, absl::Time) { return std::string(); }},
    {"Garbage", "malformed", [](const JwtVerifierTest&, absl::Time) {
       return std::string("not.a.token");
     }},
    {"BadSignature", "bad signature", [](const JwtVerifierTest&, absl::Time now) {
       return SigningKey::Hs256("another-secret-of-the-same-size-xx").Sign(Good(now));
     }},
    {"TamperedPayload", "bad signature", [](const JwtVerifierTest& t, absl::Time now) {
       const std::string token =
           static_cast<const JwtBadTokenTest&>(t).hs().Sign(Good(now));
       json claims = Good(now);
       claims["sub"] = "mallory";
       const size_t first = token.find('.');
       const size_t second = token.find('.', first + 1);
       return token.substr(0, first + 1) +
              absl::WebSafeBase64Escape(claims.dump()) + token.substr(second);
     }},
    {"Expired", "expired", [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims["exp"] = absl::ToUnixSeconds(now - absl::Minutes(5));
       return static_cast<const JwtBadTokenTest&>(t).hs().Sign(claims);
     }},
    {"NoExp", "no exp", [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims.erase("exp");
       return static_cast<const JwtBadTokenTest&>(t).hs().Sign(claims);
     }},
    {"NotYetValid", "not yet valid", [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims["nbf"] = absl::ToUnixSeconds(now + absl::Minutes(5));
       return static_cast<const JwtBadTokenTest&>(t).rsa().Sign(claims);
     }},
    {"WrongIssuer", "wrong issuer", [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims["iss"] = "https://evil.example";
       return static_cast<const JwtBadTokenTest&>(t).ec().Sign(claims);
     }},
    {"WrongAudience", "wrong audience", [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims["aud"] = "someone-else";
       return static_cast<const JwtBadTokenTest&>(t).hs().Sign(claims);
     }},
    {"AlgNone", "not accepted", [](const JwtVerifierTest&, absl::Time now) {
       return UnsignedToken(Good(now));
     }},
    {"UnknownKid", "unknown kid", [](const JwtVerifierTest&, absl::Time now) {
       return SigningKey::Rs256("rsa-unknown").Sign(Good(now));
     }},
    {"EcTokenNamingAnRsaKey", "does not match", [](const JwtVerifierTest&, absl::Time now) {
       return SigningKey::Es256("rsa-1").Sign(Good(now));
     }},
    {"RsaKeyUsedAsHmacSecret", "bad signature", [](const JwtVerifierTest& t, absl::Time now) {
       // The HS/RS confusion: HMAC keyed with the server's public key.
       const std::string public_key =
           static_cast<const JwtBadTokenTest&>(t).rsa().PublicJwk().dump();
       return SigningKey::Hs256(public_key).Sign(Good(now), {{"kid", "rsa-1"}});
     }},
    {"NoSubject", "no user", [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims.erase("sub");
       return static_cast<const JwtBadTokenTest&>(t).hs().Sign(claims);
     }},
};

INSTANTIATE_TEST_SUITE_P(Table, JwtBadTokenTest, ::testing::ValuesIn(kBadTokens),
                         [](const auto& info) { return info.param.name; });

TEST_F(JwtVerifierTest, Hs256IsRefusedWhenOnlyAsymmetricKeysAreConfigured) {
  JwtOptions options;
  options.jwks_file = jwks_path_;
  auto verifier = Verifier(options);
  EXPECT_TRUE(absl::IsUnauthenticated(
      verifier->Verify(hs_.Sign(ClaimsFor("alice", now_)), now_).status()));
  EXPECT_TRUE(verifier->Verify(rsa_.Sign(ClaimsFor("alice", now_)), now_).ok());
}

TEST_F(JwtVerifierTest, ARotatedKeyIsAcceptedOnceTheFileChanges) {
  JwtOptions options;
  options.jwks_file = jwks_path_;
  options.jwks_check_interval = absl::Seconds(1);
  auto verifier = Verifier(options);
  const SigningKey next = SigningKey::Es256("ec-2");
  const std::string token = next.Sign(ClaimsFor("alice", now_));
  EXPECT_FALSE(verifier->Verify(token, now_).ok());
  WriteJwks(jwks_path_, {&next, &rsa_, &ec_, &hs_ /* skipped: symmetric */});
  // Within the interval the file is not looked at again.
  EXPECT_FALSE(verifier->Verify(token, now_ + absl::Milliseconds(500)).ok());
  EXPECT_TRUE(verifier->Verify(token, now_ + absl::Seconds(2)).ok());
  // A symmetric key in a JWKS is never used.
  EXPECT_FALSE(
      verifier->Verify(hs_.Sign(ClaimsFor("alice", now_)), now_ + absl::Seconds(2))
          .ok());
}

TEST_F(JwtVerifierTest, CreateNeedsAKey) {
  EXPECT_FALSE(JwtVerifier::Create(JwtOptions{}).ok());
  JwtOptions options;
  options.jwks_file = dir_.File("missing.json");
  EXPECT_FALSE(JwtVerifier::Create(options).ok());
}

}  // namespace
}  // namespace coach::testing
