// MaskUrlPassword: what the logs may show of a database URL.
#include "base/url_mask.h"

#include <gtest/gtest.h>

namespace coach {
namespace {

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
