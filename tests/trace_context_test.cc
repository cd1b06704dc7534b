// W3C Trace Context (base/trace_context.h): the traceparent header's rules,
// from the spec's own examples.
#include "base/trace_context.h"

#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <string>

namespace coach {
namespace {

constexpr char kSpecExample[] =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceparentTest, TheSpecsExampleParsesAndFormatsBack) {
  const std::optional<TraceContext> trace = ParseTraceparent(kSpecExample);
  ASSERT_TRUE(trace.has_value());
  EXPECT_EQ(trace->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(trace->span_id, "00f067aa0ba902b7");
  EXPECT_EQ(trace->flags, "01");
  EXPECT_EQ(FormatTraceparent(*trace), kSpecExample);
}

TEST(TraceparentTest, MalformedHeadersAreRefused) {
  for (
      const char* header : {
          "",
          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  // no flags
          "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper
          "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero id
          "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero
                                                                      // span
          "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version
                                                                      // ff
          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // 00 +
                                                                        // more
          "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // separator
          "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  // not hex
      }) {
    EXPECT_FALSE(ParseTraceparent(header).has_value()) << header;
  }
}

TEST(TraceparentTest, ALaterVersionIsReadByItsVersion00Prefix) {
  const std::optional<TraceContext> trace = ParseTraceparent(
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes");
  ASSERT_TRUE(trace.has_value());
  EXPECT_EQ(trace->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_FALSE(ParseTraceparent(
                   "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x")
                   .has_value());
}

TEST(TraceparentTest, ContinuingKeepsTheTraceUnderANewSpan) {
  const TraceContext continued = ContinueTrace(kSpecExample);
  EXPECT_EQ(continued.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(continued.flags, "01");
  EXPECT_NE(continued.span_id, "00f067aa0ba902b7");
  EXPECT_TRUE(ParseTraceparent(FormatTraceparent(continued)).has_value());
}

TEST(TraceparentTest, NoOrABadHeaderStartsANewTrace) {
  std::set<std::string> traces;
  for (const char* header : {"", "garbage", "00-zz"}) {
    const TraceContext trace = ContinueTrace(header);
    EXPECT_EQ(trace.flags, "00");
    ASSERT_TRUE(ParseTraceparent(FormatTraceparent(trace)).has_value())
        << FormatTraceparent(trace);
    traces.insert(trace.trace_id);
  }
  EXPECT_EQ(traces.size(), 3u) << "trace ids repeat";
  EXPECT_EQ(NewTraceId().size(), 32u);
  EXPECT_EQ(NewSpanId().size(), 16u);
}

TEST(TracestateTest, ForwardedWhenPrintableAndShort) {
  EXPECT_TRUE(
      IsForwardableTracestate("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
  EXPECT_FALSE(IsForwardableTracestate("a=b\x01"));
  EXPECT_FALSE(
      IsForwardableTracestate(std::string(kMaxTracestateLength + 1, 'a')));
}

}  // namespace
}  // namespace coach
