// base/url.h: the userinfo of a URL never reaches a log line.
#include "base/url.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace coach {
namespace {

TEST(WithoutUserinfoTest, MasksUserAndPassword) {
  EXPECT_EQ(WithoutUserinfo("http://user:password@host/v1"),
            "http://***@host/v1");
  EXPECT_EQ(WithoutUserinfo("https://token@api.example.com:8443"),
            "https://***@api.example.com:8443");
  // A password holding '@' (unescaped): everything up to the last '@' of
  // the authority goes.
  EXPECT_EQ(WithoutUserinfo("http://u:p@ss@host:80/a?b=c@d"),
            "http://***@host:80/a?b=c@d");
  // No scheme: an authority, as curl takes a proxy.
  EXPECT_EQ(WithoutUserinfo("user:pw@proxy:3128"), "***@proxy:3128");
}

TEST(WithoutUserinfoTest, KeepsUrlsWithoutUserinfo) {
  for (const char* url :
       {"https://api.openai.com/v1", "http://127.0.0.1:8080",
        "http://host/path@not-userinfo", "http://host?q=a@b", "http://host#@",
        "dns:///coach-server:50051", "127.0.0.1:50051", "", "unix:/tmp/s"}) {
    EXPECT_EQ(WithoutUserinfo(url), url);
  }
}

TEST(MaskUrlPasswordTest, MasksTheUserinfoPasswordOnly) {
  EXPECT_EQ(MaskUrlPassword("postgresql://coach:s3cret@db:5432/coach"),
            "postgresql://coach:***@db:5432/coach");
  // A password holding ':' and '@' (percent-encoded or not) is masked whole.
  EXPECT_EQ(MaskUrlPassword("postgresql://coach:a:b@c@db/coach"),
            "postgresql://coach:***@db/coach");
  EXPECT_EQ(MaskUrlPassword("http://user:pw@host:8080/v1"),
            "http://user:***@host:8080/v1");
}

TEST(MaskUrlPasswordTest, LeavesURLsWithoutPasswordAlone) {
  for (const char* url :
       {"postgresql://coach@db:5432/coach", "postgresql://db/coach",
        "postgresql://[::1]:5432/coach", "postgresql:///coach?host=/tmp",
        "coach.db", "", "postgresql://db/a@b"}) {
    EXPECT_EQ(MaskUrlPassword(url), url);
  }
}

TEST(MaskUrlPasswordTest, MasksPasswordParameters) {
  EXPECT_EQ(MaskUrlPassword("postgresql://db/coach?user=c&password=pw&x=1"),
            "postgresql://db/coach?user=c&password=***&x=1");
  EXPECT_EQ(MaskUrlPassword("host=db password=pw dbname=coach"),
            "host=db password=*** dbname=coach");
  EXPECT_EQ(MaskUrlPassword("host=db PASSWORD='p w' dbname=coach"),
            "host=db PASSWORD=*** dbname=coach");
}

// The HTTP front's targets and gRPC's grpc-message are decoded by these
// (http_front_test checks them through http::, which names them too).
TEST(PercentDecodeTest, EscapesPlusAndErrors) {
  std::string out;
  EXPECT_TRUE(PercentDecode("a%20b+c%C3%A9", false, out));
  EXPECT_EQ(out, "a b+c\xC3\xA9");
  EXPECT_TRUE(PercentDecode("a%20b+c", true, out));
  EXPECT_EQ(out, "a b c");
  EXPECT_TRUE(PercentDecode("", false, out));
  EXPECT_EQ(out, "");
  for (const char* bad : {"%", "%2", "%zz", "a%g0", "%%"}) {
    EXPECT_FALSE(PercentDecode(bad, false, out)) << bad;
  }
}

TEST(ParseQueryTest, PairsInOrder) {
  std::vector<std::pair<std::string, std::string>> query;
  EXPECT_TRUE(ParseQuery("a=1&&b=x%20y&c&a=2&d=e=f", query));
  EXPECT_EQ(
      query,
      (std::vector<std::pair<std::string, std::string>>{
          {"a", "1"}, {"b", "x y"}, {"c", ""}, {"a", "2"}, {"d", "e=f"}}));
  EXPECT_FALSE(ParseQuery("a=%G1", query));
  EXPECT_TRUE(ParseQuery("", query));
  EXPECT_TRUE(query.empty());
}

}  // namespace
}  // namespace coach
