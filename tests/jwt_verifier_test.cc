// JwtVerifier against tokens minted by cjose: each accepted shape once, and
// every way a token must be refused (the bad-token table of issue 11).
#include "server/auth/jwt_verifier.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
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

// The raw-header helper the crit rows use makes tokens the verifier takes
// when nothing is wrong with them.
TEST_F(JwtVerifierTest, ARawHeaderTokenWithoutCritIsAccepted) {
  auto verifier = Verifier(Both());
  const auto verified = verifier->Verify(
      Hs256WithRawHeader(kSecret, R"({"alg":"HS256","typ":"JWT"})",
                         ClaimsFor("alice", now_)),
      now_);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->user_id, "alice");
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

// iat and nbf may be ahead of the verifier's clock by the leeway, no more;
// exp may be ahead by the maximum lifetime plus the leeway, no more.
TEST_F(JwtVerifierTest,
       IatNbfAndExpAheadAreBoundedByTheLeewayAndTheMaximumLifetime) {
  JwtOptions options = Both();
  options.leeway = absl::Seconds(30);
  options.max_lifetime = absl::Hours(1);
  auto verifier = Verifier(options);
  const auto verify = [&](const char* claim, absl::Duration ahead) {
    json claims = ClaimsFor("alice", now_);
    claims[claim] = absl::ToUnixSeconds(now_ + ahead);
    return verifier->Verify(hs_.Sign(claims), now_).status();
  };
  for (const char* claim : {"iat", "nbf"}) {
    EXPECT_TRUE(verify(claim, absl::Seconds(20)).ok()) << claim;
    EXPECT_TRUE(absl::IsUnauthenticated(verify(claim, absl::Seconds(40))))
        << claim;
  }
  EXPECT_TRUE(verify("exp", absl::Hours(1) + absl::Seconds(20)).ok());
  const absl::Status too_far =
      verify("exp", absl::Hours(1) + absl::Seconds(40));
  EXPECT_TRUE(absl::IsUnauthenticated(too_far)) << too_far;
  EXPECT_NE(too_far.message().find("maximum lifetime"), std::string::npos)
      << too_far;
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
  EXPECT_NE(verified.status().message().find(GetParam().why), std::string::npos)
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
    {"Missing", "empty token",
     [](const JwtVerifierTest&, absl::Time) { return std::string(); }},
    {"Garbage", "malformed",
     [](const JwtVerifierTest&, absl::Time) {
       return std::string("not.a.token");
     }},
    {"BadSignature", "bad signature",
     [](const JwtVerifierTest&, absl::Time now) {
       return SigningKey::Hs256("another-secret-of-the-same-size-xx")
           .Sign(Good(now));
     }},
    {"TamperedPayload", "bad signature",
     [](const JwtVerifierTest& t, absl::Time now) {
       const std::string token =
           static_cast<const JwtBadTokenTest&>(t).hs().Sign(Good(now));
       json claims = Good(now);
       claims["sub"] = "mallory";
       const size_t first = token.find('.');
       const size_t second = token.find('.', first + 1);
       return token.substr(0, first + 1) +
              absl::WebSafeBase64Escape(claims.dump()) + token.substr(second);
     }},
    {"Expired", "expired",
     [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims["exp"] = absl::ToUnixSeconds(now - absl::Minutes(5));
       return static_cast<const JwtBadTokenTest&>(t).hs().Sign(claims);
     }},
    {"NoExp", "no exp",
     [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims.erase("exp");
       return static_cast<const JwtBadTokenTest&>(t).hs().Sign(claims);
     }},
    {"NotYetValid", "not yet valid",
     [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims["nbf"] = absl::ToUnixSeconds(now + absl::Minutes(5));
       return static_cast<const JwtBadTokenTest&>(t).rsa().Sign(claims);
     }},
    {"WrongIssuer", "wrong issuer",
     [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims["iss"] = "https://evil.example";
       return static_cast<const JwtBadTokenTest&>(t).ec().Sign(claims);
     }},
    {"WrongAudience", "wrong audience",
     [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims["aud"] = "someone-else";
       return static_cast<const JwtBadTokenTest&>(t).hs().Sign(claims);
     }},
    {"AlgNone", "not accepted",
     [](const JwtVerifierTest&, absl::Time now) {
       return UnsignedToken(Good(now));
     }},
    {"UnknownKid", "unknown kid",
     [](const JwtVerifierTest&, absl::Time now) {
       return SigningKey::Rs256("rsa-unknown").Sign(Good(now));
     }},
    {"EcTokenNamingAnRsaKey", "does not match",
     [](const JwtVerifierTest&, absl::Time now) {
       return SigningKey::Es256("rsa-1").Sign(Good(now));
     }},
    {"RsaKeyUsedAsHmacSecret", "bad signature",
     [](const JwtVerifierTest& t, absl::Time now) {
       // The HS/RS confusion: HMAC keyed with the server's public key.
       const std::string public_key =
           static_cast<const JwtBadTokenTest&>(t).rsa().PublicJwk().dump();
       return SigningKey::Hs256(public_key).Sign(Good(now), {{"kid", "rsa-1"}});
     }},
    {"NoSubject", "no user",
     [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims.erase("sub");
       return static_cast<const JwtBadTokenTest&>(t).hs().Sign(claims);
     }},
    // RFC 7515 §4.1.11: a critical extension not understood invalidates
    // the token, signature good or not.
    {"UnknownCrit", "crit",
     [](const JwtVerifierTest& t, absl::Time now) {
       return static_cast<const JwtBadTokenTest&>(t).hs().Sign(
           Good(now),
           {{"crit", json::array({"exp-policy"})}, {"exp-policy", "ignore"}});
     }},
    {"CritOnAnAsymmetricToken", "crit",
     [](const JwtVerifierTest& t, absl::Time now) {
       // RFC 7797's unencoded payload: an extension this verifier lacks.
       return static_cast<const JwtBadTokenTest&>(t).ec().Sign(
           Good(now), {{"crit", json::array({"b64"})}, {"b64", true}});
     }},
    {"EmptyCrit", "crit",
     [](const JwtVerifierTest& t, absl::Time now) {
       return static_cast<const JwtBadTokenTest&>(t).rsa().Sign(
           Good(now), {{"crit", json::array()}});
     }},
    {"CritAString", "crit",
     [](const JwtVerifierTest& t, absl::Time now) {
       return static_cast<const JwtBadTokenTest&>(t).hs().Sign(
           Good(now), {{"crit", "exp-policy"}, {"exp-policy", "ignore"}});
     }},
    {"CritTrue", "crit",
     [](const JwtVerifierTest&, absl::Time now) {
       return Hs256WithRawHeader(kSecret, R"({"alg":"HS256","crit":true})",
                                 Good(now));
     }},
    {"CritNull", "crit",
     [](const JwtVerifierTest&, absl::Time now) {
       return Hs256WithRawHeader(kSecret, R"({"alg":"HS256","crit":null})",
                                 Good(now));
     }},
    {"IssuedADayAhead", "issued in the future",
     [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims["iat"] = absl::ToUnixSeconds(now + absl::Hours(24));
       return static_cast<const JwtBadTokenTest&>(t).hs().Sign(claims);
     }},
    {"IatNotANumber", "iat is not a number",
     [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims["iat"] = "yesterday";
       return static_cast<const JwtBadTokenTest&>(t).hs().Sign(claims);
     }},
    {"NotBeforeADayAhead", "not yet valid",
     [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims["nbf"] = absl::ToUnixSeconds(now + absl::Hours(24));
       return static_cast<const JwtBadTokenTest&>(t).hs().Sign(claims);
     }},
    {"ExpiresNever", "maximum lifetime",
     [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims["exp"] = 1e300;
       return static_cast<const JwtBadTokenTest&>(t).hs().Sign(claims);
     }},
    {"ExpiresInAMonth", "maximum lifetime",
     [](const JwtVerifierTest& t, absl::Time now) {
       json claims = Good(now);
       claims["exp"] = absl::ToUnixSeconds(now + absl::Hours(24 * 30));
       return static_cast<const JwtBadTokenTest&>(t).rsa().Sign(claims);
     }},
};

INSTANTIATE_TEST_SUITE_P(Table, JwtBadTokenTest,
                         ::testing::ValuesIn(kBadTokens),
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
      verifier
          ->Verify(hs_.Sign(ClaimsFor("alice", now_)), now_ + absl::Seconds(2))
          .ok());
}

// ReloadJwks (coach-server's SIGHUP) reads the file at once, even with the
// automatic check off and whatever the file's mtime; a file that does not
// parse is an error and the keys read before stay in use.
TEST_F(JwtVerifierTest, ReloadReadsTheFileAtOnceAndABadFileKeepsTheOldKeys) {
  JwtOptions options;
  options.jwks_file = jwks_path_;
  options.jwks_check_interval = absl::ZeroDuration();  // only on reload
  auto verifier = Verifier(options);
  const SigningKey next = SigningKey::Es256("ec-2");
  const std::string token = next.Sign(ClaimsFor("alice", now_));
  const std::string old_token = rsa_.Sign(ClaimsFor("alice", now_));
  WriteJwks(jwks_path_, {&next, &rsa_, &ec_});
  // The file changed, but only a reload reads it.
  EXPECT_FALSE(verifier->Verify(token, now_ + absl::Hours(1)).ok());
  absl::StatusOr<int> reloaded = verifier->ReloadJwks();
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(*reloaded, 3);
  EXPECT_TRUE(verifier->Verify(token, now_).ok());

  std::ofstream(jwks_path_, std::ios::trunc) << "{\"keys\": [";  // cut short
  reloaded = verifier->ReloadJwks();
  EXPECT_FALSE(reloaded.ok());
  EXPECT_EQ(verifier->JwksKeyCount(), 3);
  EXPECT_TRUE(verifier->Verify(token, now_).ok());
  EXPECT_TRUE(verifier->Verify(old_token, now_).ok());
  std::filesystem::remove(jwks_path_);
  EXPECT_FALSE(verifier->ReloadJwks().ok());
  EXPECT_TRUE(verifier->Verify(token, now_).ok());
}

TEST_F(JwtVerifierTest, ReloadWithoutAJwksFileIsAFailedPrecondition) {
  JwtOptions options;
  options.hs256_secret = kSecret;
  auto verifier = Verifier(options);
  EXPECT_TRUE(absl::IsFailedPrecondition(verifier->ReloadJwks().status()));
}

// Keys swapped under live traffic: threads verify tokens of a key present
// in every version of the file while another thread reloads it, alternately
// with and without a second key. No verification of the stable key fails,
// and ThreadSanitizer sees no race (tools/test.sh runs this suite under it).
TEST_F(JwtVerifierTest, ReloadingUnderConcurrentVerificationsIsSafe) {
  JwtOptions options;
  options.jwks_file = jwks_path_;
  options.jwks_check_interval = absl::ZeroDuration();
  auto verifier = Verifier(options);
  const std::string stable = rsa_.Sign(ClaimsFor("alice", now_));
  const std::string also_stable = ec_.Sign(ClaimsFor("bob", now_));
  const SigningKey extra = SigningKey::Es256("ec-extra");
  constexpr int kVerifiers = 4;
  constexpr int kReloads = 50;
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::atomic<int> verified{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kVerifiers; ++i) {
    threads.emplace_back([&, i] {
      const std::string& token = i % 2 == 0 ? stable : also_stable;
      // At least a few verifications each, then until the reloads end.
      for (int n = 0; n < 5 || !done.load(); ++n) {
        if (verifier->Verify(token, now_).ok()) {
          verified.fetch_add(1);
        } else {
          failures.fetch_add(1);
        }
      }
    });
  }
  for (int i = 0; i < kReloads; ++i) {
    if (i % 2 == 0) {
      WriteJwks(jwks_path_, {&rsa_, &ec_, &extra});
    } else {
      WriteJwks(jwks_path_, {&rsa_, &ec_});
    }
    EXPECT_TRUE(verifier->ReloadJwks().ok());  // no ASSERT: join first
  }
  done.store(true);
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GE(verified.load(), 5 * kVerifiers);
}

TEST_F(JwtVerifierTest, CreateNeedsAKey) {
  EXPECT_FALSE(JwtVerifier::Create(JwtOptions{}).ok());
  JwtOptions options;
  options.jwks_file = dir_.File("missing.json");
  EXPECT_FALSE(JwtVerifier::Create(options).ok());
}

// RFC 7518 §3.4: an ES256 signature is R || S, exactly 64 octets, and a
// signature of any other length is refused. Here each half is re-encoded
// with a leading zero (66 octets): a second token string for the same
// signed claims, which cjose alone accepted.
TEST_F(JwtVerifierTest, AnEs256SignatureOfAnyLengthButSixtyFourIsRefused) {
  auto verifier = Verifier(Both());
  const std::string token = ec_.Sign(ClaimsFor("alice", now_));
  ASSERT_TRUE(verifier->Verify(token, now_).ok());
  const size_t dot = token.rfind('.');
  std::string signature;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(token.substr(dot + 1), &signature));
  ASSERT_EQ(signature.size(), 64u);
  const std::string padded =
      absl::StrCat(std::string(1, '\0'), signature.substr(0, 32),
                   std::string(1, '\0'), signature.substr(32));
  const std::string variant =
      token.substr(0, dot + 1) + absl::WebSafeBase64Escape(padded);
  ASSERT_NE(variant, token);
  const auto verified = verifier->Verify(variant, now_);
  EXPECT_TRUE(absl::IsUnauthenticated(verified.status()))
      << "a 66-octet ES256 signature was accepted: " << verified.status();
}

}  // namespace
}  // namespace coach::testing
