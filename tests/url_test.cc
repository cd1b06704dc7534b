// base/url.h: the userinfo of a URL never reaches a log line.
#include "base/url.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace coach
