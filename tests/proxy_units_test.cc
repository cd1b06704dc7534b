// Unit tests of coach-proxy's pieces, without network: path templates, the
// route table read from the generated descriptors, the gRPC -> HTTP error
// mapping and the JSON transcoding of requests and responses.
#include <grpcpp/support/status.h>
#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coach/v1/chat.pb.h"
#include "coach/v1/user.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "nlohmann/json.hpp"
#include "proxy/http_errors.h"
#include "proxy/json_types.h"
#include "proxy/path_template.h"
#include "proxy/proxy_flags.h"
#include "proxy/route_table.h"
#include "proxy/transcoder.h"

namespace coach::proxy {
namespace {

using google::protobuf::DescriptorPool;
using Query = std::multimap<std::string, std::string>;

// ---------------------------------------------------------------- PathTemplate

PathTemplate MustParse(const std::string& text) {
  absl::StatusOr<PathTemplate> parsed = PathTemplate::Parse(text);
  EXPECT_TRUE(parsed.ok()) << text << ": " << parsed.status();
  return parsed.ok() ? *std::move(parsed) : PathTemplate();
}

TEST(PathTemplateTest, LiteralsMatchExactly) {
  const PathTemplate t = MustParse("/api/chat/send");
  EXPECT_EQ(t.text(), "/api/chat/send");
  ASSERT_TRUE(t.Match("/api/chat/send").has_value());
  EXPECT_TRUE(t.Match("/api/chat/send")->empty());
  EXPECT_FALSE(t.Match("/api/chat/sen").has_value());
  EXPECT_FALSE(t.Match("/api/chat").has_value());
  EXPECT_FALSE(t.Match("api/chat/send").has_value());
  // A trailing slash or an extra segment is another path.
  EXPECT_FALSE(t.Match("/api/chat/send/").has_value());
  EXPECT_FALSE(t.Match("/api/chat/send/more").has_value());
  EXPECT_FALSE(t.Match("/API/chat/send").has_value());
}

TEST(PathTemplateTest, VariableBindsOneSegment) {
  const PathTemplate t = MustParse("/api/chat/sessions/{session_id}");
  const auto bindings = t.Match("/api/chat/sessions/abc-123");
  ASSERT_TRUE(bindings.has_value());
  EXPECT_EQ(*bindings, (PathBindings{{"session_id", "abc-123"}}));
  EXPECT_FALSE(t.Match("/api/chat/sessions").has_value());
  EXPECT_FALSE(t.Match("/api/chat/sessions/").has_value());
  EXPECT_FALSE(t.Match("/api/chat/sessions/abc/").has_value());
  EXPECT_FALSE(t.Match("/api/chat/sessions/abc/def").has_value());
}

TEST(PathTemplateTest, ExplicitStarVariableAndUnboundStar) {
  const PathTemplate t = MustParse("/v1/{name=*}/items/*");
  const auto bindings = t.Match("/v1/shelf7/items/x");
  ASSERT_TRUE(bindings.has_value());
  // The unbound `*` matches but binds nothing.
  EXPECT_EQ(*bindings, (PathBindings{{"name", "shelf7"}}));
  EXPECT_FALSE(t.Match("/v1/shelf7/items").has_value());
  EXPECT_FALSE(t.Match("/v1/shelf7/other/x").has_value());
}

TEST(PathTemplateTest, NestedFieldPath) {
  const PathTemplate t = MustParse("/v1/{book.shelf.id}/{book.id}");
  const auto bindings = t.Match("/v1/s1/b2");
  ASSERT_TRUE(bindings.has_value());
  EXPECT_EQ(*bindings,
            (PathBindings{{"book.shelf.id", "s1"}, {"book.id", "b2"}}));
}

TEST(PathTemplateTest, TrailingDoubleStarBindsTheRest) {
  const PathTemplate t = MustParse("/v1/files/{path=**}");
  auto bindings = t.Match("/v1/files/a/b/c.txt");
  ASSERT_TRUE(bindings.has_value());
  EXPECT_EQ(*bindings, (PathBindings{{"path", "a/b/c.txt"}}));
  bindings = t.Match("/v1/files/one");
  ASSERT_TRUE(bindings.has_value());
  EXPECT_EQ(*bindings, (PathBindings{{"path", "one"}}));
  // `**` needs at least one segment.
  EXPECT_FALSE(t.Match("/v1/files").has_value());
  EXPECT_FALSE(t.Match("/v1/files/").has_value());
}

TEST(PathTemplateTest, RejectsUnsupportedSyntax) {
  const std::vector<std::string> bad = {
      "/v1/things:batchGet",   // custom verb
      "/v1/{name}:cancel",     // custom verb after a variable
      "/v1/{name",             // unclosed brace
      "/v1/{name=**}/tail",    // ** not last
      "/v1/**/tail",           // unbound ** not last
      "/v1/{=*}",              // unnamed variable
      "/v1/{name=shelves/*}",  // multi-segment variable pattern
      "/v1//x",                // empty segment
      "v1/x",                  // no leading slash
      "/v1/a{b}",              // brace inside a literal
  };
  for (const std::string& text : bad) {
    EXPECT_FALSE(PathTemplate::Parse(text).ok()) << text;
  }
}

// ------------------------------------------------------------------ RouteTable

const std::vector<std::string> kServices = {"coach.v1.ChatService",
                                            "coach.v1.UserService"};

RouteTable GeneratedRoutes() {
  absl::StatusOr<RouteTable> table =
      RouteTable::FromServices(*DescriptorPool::generated_pool(), kServices);
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *std::move(table) : RouteTable();
}

// A route by verb and template, for the transcoder tests.
const Route& RouteFor(const RouteTable& table, const std::string& verb,
                      const std::string& path) {
  for (const Route& route : table.routes()) {
    if (route.http_method == verb && route.path.text() == path) return route;
  }
  ADD_FAILURE() << "no route " << verb << " " << path;
  static const Route kNone;
  return kNone;
}

// The eight routes of the API page, and the streamed send (issue 14).
TEST(RouteTableTest, ExactlyTheDocumentedRoutes) {
  const RouteTable table = GeneratedRoutes();
  using Row = std::tuple<std::string, std::string, std::string, std::string>;
  std::set<Row> actual;
  for (const Route& r : table.routes()) {
    ASSERT_NE(r.method, nullptr);
    actual.insert({r.http_method, r.path.text(), r.body, r.grpc_method});
  }
  const std::set<Row> expected = {
      {"GET", "/api/chat/sessions", "", "/coach.v1.ChatService/ListSessions"},
      {"POST", "/api/chat/sessions", "*",
       "/coach.v1.ChatService/CreateSession"},
      {"GET", "/api/chat/sessions/{session_id}", "",
       "/coach.v1.ChatService/GetSession"},
      {"PATCH", "/api/chat/sessions/{session_id}", "*",
       "/coach.v1.ChatService/UpdateSession"},
      {"DELETE", "/api/chat/sessions/{session_id}", "",
       "/coach.v1.ChatService/DeleteSession"},
      {"POST", "/api/chat/send", "*", "/coach.v1.ChatService/SendMessage"},
      {"POST", "/api/chat/send/stream", "*",
       "/coach.v1.ChatService/StreamMessage"},
      {"GET", "/api/chat/history", "", "/coach.v1.ChatService/GetHistory"},
      {"GET", "/api/user/stats", "", "/coach.v1.UserService/GetUserStats"},
      {"GET", "/api/user/usage", "", "/coach.v1.UserService/GetUsage"},
      {"GET", "/api/user/export", "", "/coach.v1.UserService/ExportUserData"},
      {"DELETE", "/api/user", "", "/coach.v1.UserService/DeleteUser"},
  };
  EXPECT_EQ(actual, expected);
  EXPECT_EQ(table.routes().size(), 12u);  // no duplicates either
  // The method descriptor agrees with the gRPC name.
  for (const Route& r : table.routes()) {
    EXPECT_EQ("/" + r.method->service()->full_name() + "/" + r.method->name(),
              r.grpc_method);
  }
}

TEST(RouteTableTest, AdminRpcsHaveNoRoute) {
  const RouteTable table = GeneratedRoutes();
  for (const Route& r : table.routes()) {
    EXPECT_NE(r.method->name(), "SetPlan");
    EXPECT_NE(r.method->name(), "GrantCredits");
    EXPECT_NE(r.method->name(), "ListUsage");
  }
}

TEST(RouteTableTest, FindBindsPathVariables) {
  const RouteTable table = GeneratedRoutes();
  for (const std::string verb : {"GET", "PATCH", "DELETE"}) {
    const RouteTable::Match m = table.Find(verb, "/api/chat/sessions/abc");
    ASSERT_NE(m.route, nullptr) << verb;
    EXPECT_EQ(m.route->http_method, verb);
    EXPECT_EQ(m.bindings, (PathBindings{{"session_id", "abc"}}));
    EXPECT_TRUE(m.allowed_methods.empty());
  }
  const RouteTable::Match list = table.Find("GET", "/api/chat/sessions");
  ASSERT_NE(list.route, nullptr);
  EXPECT_EQ(list.route->grpc_method, "/coach.v1.ChatService/ListSessions");
  EXPECT_TRUE(list.bindings.empty());
}

TEST(RouteTableTest, WrongMethodListsAllowedOnes) {
  const RouteTable table = GeneratedRoutes();
  RouteTable::Match m = table.Find("PUT", "/api/chat/send");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.allowed_methods, std::vector<std::string>{"POST"});

  m = table.Find("POST", "/api/chat/sessions/abc");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(
      std::set<std::string>(m.allowed_methods.begin(), m.allowed_methods.end()),
      (std::set<std::string>{"GET", "PATCH", "DELETE"}));
}

TEST(RouteTableTest, UnknownPathHasNoAllowedMethods) {
  const RouteTable table = GeneratedRoutes();
  for (const std::string path :
       {"/nope", "/api/chat/send/", "/api/chat/sessions/a/b", "/", ""}) {
    const RouteTable::Match m = table.Find("GET", path);
    EXPECT_EQ(m.route, nullptr) << path;
    EXPECT_TRUE(m.allowed_methods.empty()) << path;
  }
}

TEST(RouteTableTest, UnknownServiceIsAnError) {
  const auto table = RouteTable::FromServices(
      *DescriptorPool::generated_pool(),
      {"coach.v1.ChatService", "coach.v1.NoSuchService"});
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(table.status().message().find("coach.v1.NoSuchService"),
            std::string::npos);
}

// Routes from a service built at test time: each rule becomes one method
// (M0, M1, ...) of routes.test.Svc, taking routes.test.Req.
class TestRoutesTest : public ::testing::Test {
 protected:
  struct Rule {
    std::string verb;  // "get", "post", ...
    std::string path;
    std::string options = "";  // more method options, in text format
  };

  absl::StatusOr<RouteTable> Build(const std::vector<Rule>& rules) {
    std::string text = R"pb(
      name: "routes_test.proto"
      package: "routes.test"
      syntax: "proto3"
      dependency: "google/api/annotations.proto"
      dependency: "coach/v1/http_headers.proto"
      message_type {
        name: "Inner"
        field { name: "id" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL }
      }
      message_type {
        name: "Req"
        field { name: "name" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL }
        field { name: "count" number: 2 type: TYPE_INT32 label: LABEL_OPTIONAL }
        field {
          name: "inner"
          number: 3
          type: TYPE_MESSAGE
          type_name: ".routes.test.Inner"
          label: LABEL_OPTIONAL
        }
        field { name: "tags" number: 4 type: TYPE_STRING label: LABEL_REPEATED }
      }
      message_type { name: "Res" }
      service {
        name: "Svc"
    )pb";
    for (size_t i = 0; i < rules.size(); ++i) {
      text += absl::StrCat(
          "method { name: \"M", i, "\" input_type: \".routes.test.Req\" ",
          "output_type: \".routes.test.Res\" options { [google.api.http] { ",
          rules[i].verb, ": \"", rules[i].path, "\" } ", rules[i].options,
          " } }\n");
    }
    text += "}\n";
    google::protobuf::FileDescriptorProto file;
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &file));
    pool_ = std::make_unique<DescriptorPool>(DescriptorPool::generated_pool());
    EXPECT_NE(pool_->BuildFile(file), nullptr);
    return RouteTable::FromServices(*pool_, {"routes.test.Svc"});
  }

  // The method serving `verb path`, "" if none.
  static std::string Served(const RouteTable& table, const std::string& verb,
                            const std::string& path) {
    const RouteTable::Match match = table.Find(verb, path);
    return match.route == nullptr ? "" : match.route->method->name();
  }

  std::unique_ptr<DescriptorPool> pool_;
};

// The headers a method declares (coach.v1.request_headers/response_headers)
// become its route's; one that could not travel as gRPC metadata stops the
// start, naming the method.
TEST_F(TestRoutesTest, DeclaredHeadersAreTheRoutesAndBadOnesAreRefused) {
  auto table = Build({{"post", "/v1/things",
                       "[coach.v1.request_headers] { name: \"X-Key\" "
                       "metadata: \"x-key\" } "
                       "[coach.v1.response_headers] { name: \"X-Done\" "
                       "metadata: \"x-done\" }"}});
  ASSERT_TRUE(table.ok()) << table.status();
  const Route& route = table->routes().front();
  ASSERT_EQ(route.request_headers.size(), 1u);
  EXPECT_EQ(route.request_headers[0].http, "X-Key");
  EXPECT_EQ(route.request_headers[0].metadata, "x-key");
  ASSERT_EQ(route.response_headers.size(), 1u);
  EXPECT_EQ(route.response_headers[0].metadata, "x-done");
  for (const char* header : {
           R"(name: "X-Key" metadata: "X-Key")",     // upper case
           R"(name: "X-Key" metadata: "grpc-key")",  // gRPC's own
           R"(name: "X-Key" metadata: "key-bin")",   // binary
           R"(name: "X Key" metadata: "x-key")",     // not a token
           R"(name: "X-Key" metadata: "")",
       }) {
    auto refused =
        Build({{"post", "/v1/things",
                absl::StrCat("[coach.v1.request_headers] { ", header, " }")}});
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument)
        << header;
  }
}

TEST_F(TestRoutesTest, PathVariablesNamingScalarFieldsAreAccepted) {
  const auto table = Build({{"get", "/v1/{name}"},
                            {"get", "/v1/{count}/c"},
                            {"get", "/v1/{inner.id}/i"},
                            {"get", "/v1/both/{name=*}/{inner.id}"}});
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->routes().size(), 4u);
}

TEST_F(TestRoutesTest, PathVariableNamingNoScalarFieldStopsTheStart) {
  // A typo, a message, a repeated field, a step through a scalar, a dotted
  // path naming nothing, and the same in a ** variable.
  for (const std::string variable :
       {"naem", "inner", "tags", "name.id", "inner.nope", "nope=**"}) {
    const auto table =
        Build({{"get", "/v1/ok/{name}"}, {"get", "/v1/x/{" + variable + "}"}});
    ASSERT_FALSE(table.ok()) << variable;
    EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string message(table.status().message());
    EXPECT_NE(message.find("routes.test.Svc.M1"), std::string::npos) << message;
    const std::string name = variable.substr(0, variable.find('='));
    EXPECT_NE(message.find("{" + name + "}"), std::string::npos) << message;
  }
}

TEST_F(TestRoutesTest, LiteralSegmentBeatsVariableInEitherOrder) {
  const std::vector<Rule> variable_first = {{"get", "/v1/things/{name}"},
                                            {"get", "/v1/things/special"}};
  const std::vector<Rule> literal_first = {{"get", "/v1/things/special"},
                                           {"get", "/v1/things/{name}"}};
  for (const auto& [rules, variable, literal] :
       {std::tuple(variable_first, "M0", "M1"),
        std::tuple(literal_first, "M1", "M0")}) {
    const auto table = Build(rules);
    ASSERT_TRUE(table.ok()) << table.status();
    EXPECT_EQ(Served(*table, "GET", "/v1/things/special"), literal);
    EXPECT_EQ(Served(*table, "GET", "/v1/things/other"), variable);
    EXPECT_EQ(table->Find("GET", "/v1/things/other").bindings,
              (PathBindings{{"name", "other"}}));
    // Both serve GET only: one method in the Allow list.
    EXPECT_EQ(table->Find("POST", "/v1/things/special").allowed_methods,
              std::vector<std::string>{"GET"});
  }
}

TEST_F(TestRoutesTest, MostSpecificWinsSegmentBySegmentFromTheLeft) {
  const auto table = Build({{"get", "/v1/{name=**}"},
                            {"get", "/v1/{name}/{count}"},
                            {"get", "/v1/{name}/fixed"},
                            {"get", "/v1/a/{count}"}});
  ASSERT_TRUE(table.ok()) << table.status();
  // The leftmost difference decides: /v1/a/{count} beats /v1/{name}/fixed.
  EXPECT_EQ(Served(*table, "GET", "/v1/a/fixed"), "M3");
  EXPECT_EQ(Served(*table, "GET", "/v1/b/fixed"), "M2");
  // One segment beats the rest (M0 matches too, and is declared first).
  EXPECT_EQ(Served(*table, "GET", "/v1/b/7"), "M1");
  EXPECT_EQ(Served(*table, "GET", "/v1/b/7/8"), "M0");
  // A method served elsewhere on the path is still a 405, not a 404.
  const RouteTable::Match other = table->Find("DELETE", "/v1/a/fixed");
  EXPECT_EQ(other.route, nullptr);
  EXPECT_EQ(other.allowed_methods, std::vector<std::string>{"GET"});
}

// ----------------------------------------------------------------- Errors

TEST(HttpErrorsTest, StandardGrpcToHttpTable) {
  using C = grpc::StatusCode;
  const std::vector<std::pair<C, int>> table = {
      {C::INVALID_ARGUMENT, 400},   {C::FAILED_PRECONDITION, 400},
      {C::OUT_OF_RANGE, 400},       {C::UNAUTHENTICATED, 401},
      {C::PERMISSION_DENIED, 403},  {C::NOT_FOUND, 404},
      {C::ALREADY_EXISTS, 409},     {C::ABORTED, 409},
      {C::RESOURCE_EXHAUSTED, 429}, {C::UNIMPLEMENTED, 501},
      {C::UNAVAILABLE, 503},        {C::DEADLINE_EXCEEDED, 504},
      {C::INTERNAL, 500},           {C::UNKNOWN, 500},
      {C::DATA_LOSS, 500},
  };
  for (const auto& [code, http] : table) {
    EXPECT_EQ(HttpStatusFromGrpc(code), http) << static_cast<int>(code);
  }
}

// A status as coach-server sends it: code, French message, and an ErrorInfo
// packed in the google.rpc.Status of the binary details.
grpc::Status ServerStatus(grpc::StatusCode code, const std::string& message,
                          const std::string& reason) {
  google::rpc::ErrorInfo info;
  info.set_reason(reason);
  info.set_domain("coach.v1");
  google::rpc::Status details;
  details.set_code(static_cast<int>(code));
  details.set_message(message);
  details.add_details()->PackFrom(info);
  return grpc::Status(code, message, details.SerializeAsString());
}

TEST(HttpErrorsTest, NoCreditsIsTheDocumented402ByteForByte) {
  const HttpError error = HttpErrorFromGrpc(ServerStatus(
      grpc::StatusCode::RESOURCE_EXHAUSTED,
      "Vous avez épuisé vos crédits de chat. Passez à un abonnement "
      "supérieur pour continuer.",
      "NO_CREDITS"));
  EXPECT_EQ(error.status, 402);
  EXPECT_EQ(error.body,
            R"({"error":"Crédits insuffisants","code":"NO_CREDITS",)"
            R"("message":"Vous avez épuisé vos crédits de chat. Passez à un )"
            R"(abonnement supérieur pour continuer."})");
}

// Any RetryInfo becomes Retry-After, whatever the reason (here one this
// build does not know): whole seconds rounded up, never below 1.
TEST(HttpErrorsTest, AnyRetryInfoBecomesRetryAfterInWholeSecondsAtLeastOne) {
  const std::vector<std::tuple<int64_t, int32_t, int64_t>> cases = {
      {3, 0, 3}, {2, 1, 3}, {0, 500000000, 1}, {0, 0, 1}, {59, 999999999, 60}};
  for (const auto& [seconds, nanos, header] : cases) {
    grpc::Status base = ServerStatus(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                     "Patientez.", "SOME_FUTURE_REASON");
    google::rpc::Status details;
    ASSERT_TRUE(details.ParseFromString(base.error_details()));
    google::rpc::RetryInfo retry;
    retry.mutable_retry_delay()->set_seconds(seconds);
    retry.mutable_retry_delay()->set_nanos(nanos);
    details.add_details()->PackFrom(retry);
    const HttpError error = HttpErrorFromGrpc(grpc::Status(
        base.error_code(), base.error_message(), details.SerializeAsString()));
    EXPECT_EQ(error.status, 429);
    EXPECT_EQ(error.retry_after_seconds, header) << seconds << "s " << nanos;
  }
  // No RetryInfo, no header.
  EXPECT_FALSE(
      HttpErrorFromGrpc(ServerStatus(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                     "Plus de crédits.", "NO_CREDITS"))
          .retry_after_seconds.has_value());
}

TEST(HttpErrorsTest, ReasonsKeepTheirCodeStatusAndServerMessage) {
  struct Case {
    grpc::StatusCode code;
    std::string reason;
    int http;
  };
  const std::vector<Case> cases = {
      {grpc::StatusCode::NOT_FOUND, "SESSION_NOT_FOUND", 404},
      {grpc::StatusCode::PERMISSION_DENIED, "SESSION_FORBIDDEN", 403},
      {grpc::StatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT", 400},
      {grpc::StatusCode::UNAVAILABLE, "AI_UNAVAILABLE", 503},
      {grpc::StatusCode::INTERNAL, "INTERNAL", 500},
  };
  for (const Case& c : cases) {
    const HttpError error = HttpErrorFromGrpc(
        ServerStatus(c.code, "Message « français ».", c.reason));
    EXPECT_EQ(error.status, c.http) << c.reason;
    EXPECT_NE(error.body.find("\"code\":\"" + c.reason + "\""),
              std::string::npos)
        << error.body;
    EXPECT_NE(error.body.find("\"message\":\"Message « français ».\""),
              std::string::npos)
        << error.body;
    EXPECT_EQ(error.body.rfind("{\"error\":\"", 0), 0u) << error.body;
  }
}

TEST(HttpErrorsTest, ChannelFailureGetsGenericFrenchMessage) {
  // No details: gRPC's own failure, with a technical English message.
  const std::string technical =
      "failed to connect to all addresses; last error: UNKNOWN: "
      "ipv4:127.0.0.1:1: Failed to connect to remote host: Connection refused";
  HttpError error =
      HttpErrorFromGrpc(grpc::Status(grpc::StatusCode::UNAVAILABLE, technical));
  EXPECT_EQ(error.status, 503);
  EXPECT_EQ(error.body.find("Connection refused"), std::string::npos);
  EXPECT_EQ(error.body.find("ipv4"), std::string::npos);
  EXPECT_NE(error.body.find("\"code\":\"UNAVAILABLE\""), std::string::npos)
      << error.body;
  EXPECT_NE(error.body.find("indisponible"), std::string::npos) << error.body;

  error = HttpErrorFromGrpc(
      grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded"));
  EXPECT_EQ(error.status, 504);
  EXPECT_EQ(error.body.find("Deadline Exceeded"), std::string::npos);
  EXPECT_NE(error.body.find("\"code\":\"DEADLINE_EXCEEDED\""),
            std::string::npos);

  error = HttpErrorFromGrpc(
      grpc::Status(grpc::StatusCode::INTERNAL, "Stream removed"));
  EXPECT_EQ(error.status, 500);
  EXPECT_EQ(error.body.find("Stream removed"), std::string::npos);
  EXPECT_NE(error.body.find("Erreur serveur"), std::string::npos);
}

TEST(HttpErrorsTest, MakeHttpErrorHasTheDocumentedShape) {
  const HttpError error =
      MakeHttpError(404, v1::ROUTE_NOT_FOUND, "Aucune route GET /x.");
  EXPECT_EQ(error.status, 404);
  EXPECT_EQ(error.body, R"({"error":"Route inconnue","code":"ROUTE_NOT_FOUND",)"
                        R"("message":"Aucune route GET /x."})");
  // Invalid UTF-8 in a message is replaced, never thrown.
  const HttpError bad =
      MakeHttpError(400, v1::INVALID_ARGUMENT, "Aucune route GET /\xff.");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("\"code\":\"INVALID_ARGUMENT\""), std::string::npos);
}

// ------------------------------------------------------------- Transcoder

class TranscoderTest : public ::testing::Test {
 protected:
  const Route& Route_(const std::string& verb, const std::string& path) {
    return RouteFor(table_, verb, path);
  }
  template <typename T>
  absl::StatusOr<T> Request(const std::string& verb, const std::string& path,
                            const PathBindings& bindings, const Query& query,
                            const std::string& body) {
    auto message = RequestFromHttp(Route_(verb, path), bindings, query, body);
    if (!message.ok()) return message.status();
    T typed;
    EXPECT_EQ((*message)->GetDescriptor(), T::descriptor());
    typed.CopyFrom(**message);
    return typed;
  }
  absl::StatusOr<v1::SendMessageRequest> Send(const std::string& body) {
    return Request<v1::SendMessageRequest>("POST", "/api/chat/send", {}, {},
                                           body);
  }
  absl::StatusOr<v1::GetHistoryRequest> History(const Query& query) {
    return Request<v1::GetHistoryRequest>("GET", "/api/chat/history", {}, query,
                                          "");
  }

  const RouteTable table_ = GeneratedRoutes();
};

TEST_F(TranscoderTest, QueryIntegerTakesTheFieldType) {
  auto request = History({{"userId", "u1"}, {"limit", "10"}});
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->user_id(), "u1");
  ASSERT_TRUE(request->has_limit());
  EXPECT_EQ(request->limit(), 10);

  request = History({{"userId", "u1"}});
  ASSERT_TRUE(request.ok());
  EXPECT_FALSE(request->has_limit());

  // The proto name works too, and unknown parameters are ignored.
  request = History({{"user_id", "u2"}, {"utm_source", "mail"}});
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->user_id(), "u2");
}

TEST_F(TranscoderTest, AnIntegerBeyondItsRangeIsTheRangesEnd) {
  auto request = History({{"userId", "u1"}, {"limit", "99999999999"}});
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->limit(), std::numeric_limits<int32_t>::max());
  request = History({{"userId", "u1"}, {"limit", "-99999999999"}});
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->limit(), std::numeric_limits<int32_t>::min());
}

TEST_F(TranscoderTest, BadQueryValuesAreFrenchErrors) {
  for (const std::string limit : {"abc", "1.5", "1e99", "", "10abc", "+-1"}) {
    const auto request = History({{"userId", "u1"}, {"limit", limit}});
    ASSERT_FALSE(request.ok()) << "limit=" << limit;
    EXPECT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(request.status().message().find("« limit »"), std::string::npos)
        << request.status().message();
  }
  // Invalid UTF-8 in a string parameter.
  const auto request = History({{"userId", "\xff\xfe"}});
  ASSERT_FALSE(request.ok());
  EXPECT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(request.status().message().find("UTF-8"), std::string::npos);
}

TEST_F(TranscoderTest, PathVariableFillsSessionId) {
  const auto request = Request<v1::GetSessionRequest>(
      "GET", "/api/chat/sessions/{session_id}", {{"session_id", "abc"}},
      {{"userId", "owner"}}, "");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->session_id(), "abc");
  EXPECT_EQ(request->user_id(), "owner");
}

TEST_F(TranscoderTest, PathVariableWinsOverBody) {
  const auto request = Request<v1::UpdateSessionRequest>(
      "PATCH", "/api/chat/sessions/{session_id}", {{"session_id", "from-path"}},
      {}, R"({"sessionId":"from-body","title":"Nouveau titre"})");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->session_id(), "from-path");
  EXPECT_EQ(request->title(), "Nouveau titre");
}

TEST_F(TranscoderTest, BodyIsMergedAndUnknownFieldsIgnored) {
  auto request =
      Send(R"({"userId":"u1","sessionId":"s1","message":"Bonjour 😀 é 你好",)"
           R"("unknownField":{"a":[1,2]},"other":3})");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->user_id(), "u1");
  EXPECT_EQ(request->session_id(), "s1");
  EXPECT_EQ(request->message(), "Bonjour 😀 é 你好");

  // Proto field names are accepted as well as JSON names.
  request = Send(R"({"user_id":"u2","message":"m"})");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->user_id(), "u2");

  // Unknown fields that protobuf's own parser would refuse (an empty name,
  // nesting past its depth limit) are ignored all the same (docs/api.md).
  request = Send(R"({"userId":"u3","message":"m","":1})");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->user_id(), "u3");
  std::string nested = "1";
  for (int i = 0; i < 150; ++i) nested = absl::StrCat(R"({"x":)", nested, "}");
  request = Send(
      absl::StrCat(R"({"userId":"u5","message":"m","deep":)", nested, "}"));
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->user_id(), "u5");

  // An empty or blank body is an empty request (the server says what is
  // missing).
  for (const std::string body : {"", "  \r\n"}) {
    request = Send(body);
    ASSERT_TRUE(request.ok()) << request.status();
    EXPECT_EQ(request->ByteSizeLong(), 0u);
  }
}

TEST_F(TranscoderTest, OptionalBodyFieldKeepsPresence) {
  auto request = Request<v1::CreateSessionRequest>(
      "POST", "/api/chat/sessions", {}, {}, R"({"userId":"u","title":""})");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_TRUE(request->has_title());
  request = Request<v1::CreateSessionRequest>("POST", "/api/chat/sessions", {},
                                              {}, R"({"userId":"u"})");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_FALSE(request->has_title());
}

// A body value of the wrong JSON type: the French message naming the field
// by its JSON name (whichever name the body used), never protobuf's wording,
// and the field for a REST error body.
TEST_F(TranscoderTest, WrongJsonTypesNameTheFieldInFrench) {
  const std::string not_a_string =
      "Le champ userId doit être une chaîne de caractères.";
  for (const std::string body :
       {R"({"userId":5,"message":"m"})", R"({"user_id":5,"message":"m"})",
        R"({"userId":-1.5,"message":"m"})", R"({"userId":true,"message":"m"})",
        R"({"userId":{"id":"u"},"message":"m"})",
        R"({"userId":["u"],"message":"m"})"}) {
    const auto request = Send(body);
    ASSERT_FALSE(request.ok()) << body;
    EXPECT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(request.status().message(), not_a_string) << body;
    EXPECT_EQ(ErrorField(request.status()), "userId") << body;
  }
  const auto request = Send(R"({"userId":"u","message":42})");
  ASSERT_FALSE(request.ok());
  EXPECT_EQ(request.status().message(),
            "Le champ message doit être une chaîne de caractères.");
  EXPECT_EQ(ErrorField(request.status()), "message");

  // null is the field's default (the server then says what is missing).
  const auto with_null =
      Send(R"({"userId":"u","sessionId":null,"message":"m"})");
  ASSERT_TRUE(with_null.ok()) << with_null.status();
  EXPECT_EQ(with_null->session_id(), "");
}

TEST_F(TranscoderTest, InvalidJsonIsAClearFrenchError) {
  const std::vector<std::string> bad = {
      R"({"userId":"u","message":"m")",               // truncated
      R"({"userId":"u","message":"m",})",             // trailing comma
      R"({'userId':'u','message':'m'})",              // single quotes
      "{\"userId\":\"u\",\"message\":\"\xff\xfe\"}",  // invalid UTF-8
      "userId=u&message=m",
  };
  for (const std::string& body : bad) {
    const auto request = Send(body);
    ASSERT_FALSE(request.ok()) << body;
    EXPECT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(request.status().message(),
              "Le corps de la requête n'est pas un JSON valide.")
        << body;
    EXPECT_EQ(ErrorField(request.status()), std::nullopt);
  }
  for (const std::string body : {"[]", R"("x")", "42", "null", "true"}) {
    const auto request = Send(body);
    ASSERT_FALSE(request.ok()) << body;
    EXPECT_EQ(request.status().message(),
              "Le corps de la requête doit être un objet JSON.")
        << body;
  }
}

// Query parameters name themselves too.
TEST_F(TranscoderTest, BadQueryValuesCarryTheirField) {
  const auto request = History({{"userId", "u1"}, {"limit", "abc"}});
  ASSERT_FALSE(request.ok());
  EXPECT_EQ(ErrorField(request.status()), "limit");
}

// CheckJsonTypes over every kind of field, on a message built at test time
// (the API's request bodies hold only strings).
class JsonTypesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string text = R"pb(
      name: "json_types_test.proto"
      package: "json.test"
      syntax: "proto3"
      dependency: "google/protobuf/wrappers.proto"
      dependency: "google/protobuf/timestamp.proto"
      enum_type {
        name: "Color"
        value { name: "COLOR_UNSPECIFIED" number: 0 }
        value { name: "RED" number: 1 }
      }
      message_type {
        name: "Inner"
        field { name: "id" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL }
        field { name: "n" number: 2 type: TYPE_INT32 label: LABEL_OPTIONAL }
      }
      message_type {
        name: "Kinds"
        field { name: "max_count" number: 1 type: TYPE_INT32 label: LABEL_OPTIONAL }
        field { name: "big" number: 2 type: TYPE_INT64 label: LABEL_OPTIONAL }
        field { name: "ratio" number: 3 type: TYPE_DOUBLE label: LABEL_OPTIONAL }
        field { name: "enabled" number: 4 type: TYPE_BOOL label: LABEL_OPTIONAL }
        field { name: "color" number: 5 type: TYPE_ENUM type_name: ".json.test.Color" label: LABEL_OPTIONAL }
        field { name: "inner" number: 6 type: TYPE_MESSAGE type_name: ".json.test.Inner" label: LABEL_OPTIONAL }
        field { name: "tags" number: 7 type: TYPE_STRING label: LABEL_REPEATED }
        field { name: "items" number: 8 type: TYPE_MESSAGE type_name: ".json.test.Inner" label: LABEL_REPEATED }
        field { name: "counts" number: 9 type: TYPE_MESSAGE type_name: ".json.test.Kinds.CountsEntry" label: LABEL_REPEATED }
        field { name: "wrapped" number: 10 type: TYPE_MESSAGE type_name: ".google.protobuf.Int32Value" label: LABEL_OPTIONAL }
        field { name: "at" number: 11 type: TYPE_MESSAGE type_name: ".google.protobuf.Timestamp" label: LABEL_OPTIONAL }
        field { name: "name" number: 12 type: TYPE_STRING label: LABEL_OPTIONAL }
        nested_type {
          name: "CountsEntry"
          field { name: "key" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL }
          field { name: "value" number: 2 type: TYPE_INT32 label: LABEL_OPTIONAL }
          options { map_entry: true }
        }
      }
    )pb";
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &file));
    ASSERT_NE(pool_.BuildFile(file), nullptr);
    kinds_ = pool_.FindMessageTypeByName("json.test.Kinds");
    ASSERT_NE(kinds_, nullptr);
  }

  absl::Status Check(const std::string& body) {
    return CheckJsonTypes(nlohmann::json::parse(body), *kinds_);
  }
  // What protobuf's own parser says of `body` (unknown fields refused).
  bool ProtobufAccepts(const std::string& body) {
    std::unique_ptr<google::protobuf::Message> message(
        factory_.GetPrototype(kinds_)->New());
    return google::protobuf::util::JsonStringToMessage(body, message.get())
        .ok();
  }

  DescriptorPool pool_{DescriptorPool::generated_pool()};
  google::protobuf::DynamicMessageFactory factory_{&pool_};
  const google::protobuf::Descriptor* kinds_ = nullptr;
};

TEST_F(JsonTypesTest, EveryKindOfMismatchNamesItsField) {
  const std::string int32 = "un nombre entier entre -2147483648 et 2147483647";
  struct Case {
    std::string body;
    std::string message;
    std::string field;
    // Debian's protobuf (3.21) takes it although the JSON mapping does not
    // ("true" for a bool, one value for a list): refused, as the mapping
    // says; no client of the API sends either (its bodies hold strings).
    bool protobuf_lenient = false;
  };
  const std::vector<Case> cases = {
      {R"({"name":5})", "Le champ name doit être une chaîne de caractères.",
       "name"},
      {R"({"maxCount":"x"})", "Le champ maxCount doit être " + int32 + ".",
       "maxCount"},
      {R"({"max_count":1.5})", "Le champ maxCount doit être " + int32 + ".",
       "maxCount"},
      {R"({"maxCount":true})", "Le champ maxCount doit être " + int32 + ".",
       "maxCount"},
      {R"({"maxCount":3000000000})",
       "Le champ maxCount doit être " + int32 + ".", "maxCount"},
      {R"({"big":"12345678901234567890"})",
       "Le champ big doit être un nombre entier entre -9223372036854775808 et "
       "9223372036854775807.",
       "big"},
      {R"({"ratio":"abc"})", "Le champ ratio doit être un nombre.", "ratio"},
      {R"({"ratio":[1]})", "Le champ ratio doit être un nombre.", "ratio"},
      {R"({"enabled":"true"})",
       "Le champ enabled doit être un booléen (true ou false).", "enabled",
       true},
      {R"({"enabled":1})",
       "Le champ enabled doit être un booléen (true ou false).", "enabled"},
      {R"({"color":"BLUE"})",
       "Le champ color doit être une valeur parmi COLOR_UNSPECIFIED, RED.",
       "color"},
      {R"({"color":{}})",
       "Le champ color doit être une valeur parmi COLOR_UNSPECIFIED, RED.",
       "color"},
      {R"({"inner":"x"})", "Le champ inner doit être un objet JSON.", "inner"},
      {R"({"inner":[]})", "Le champ inner doit être un objet JSON.", "inner"},
      {R"({"inner":{"n":"x"}})", "Le champ inner.n doit être " + int32 + ".",
       "inner.n"},
      {R"({"tags":"a"})", "Le champ tags doit être une liste (tableau JSON).",
       "tags", true},
      {R"({"tags":["a",2]})",
       "Les éléments du champ tags doivent être des chaînes de caractères.",
       "tags[1]"},
      {R"({"items":[{"id":"a"},{"id":3}]})",
       "Le champ items[1].id doit être une chaîne de caractères.",
       "items[1].id"},
      {R"({"items":["a"]})",
       "Les éléments du champ items doivent être des objets JSON.", "items[0]"},
      {R"({"counts":[1]})", "Le champ counts doit être un objet JSON.",
       "counts"},
      {R"({"counts":{"a":"x"}})",
       "Les valeurs du champ counts doivent être des nombres entiers entre "
       "-2147483648 et 2147483647.",
       "counts.a"},
      {R"({"wrapped":"x"})", "Le champ wrapped doit être " + int32 + ".",
       "wrapped"},
      {R"({"at":5})",
       "Le champ at doit être une date RFC 3339 (chaîne de caractères).", "at"},
  };
  for (const Case& c : cases) {
    const absl::Status status = Check(c.body);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.body;
    EXPECT_EQ(status.message(), c.message) << c.body;
    EXPECT_EQ(ErrorField(status), c.field) << c.body;
    // Otherwise only reworded: protobuf's parser refuses it too.
    EXPECT_EQ(ProtobufAccepts(c.body), c.protobuf_lenient) << c.body;
  }
}

TEST_F(JsonTypesTest, WhatTheJsonMappingAcceptsPasses) {
  for (const std::string body :
       {R"({})", R"({"maxCount":"12","big":"-5","ratio":"NaN"})",
        R"({"maxCount":1e2,"ratio":1,"enabled":false})",
        R"({"max_count":null,"name":null,"inner":null,"tags":null})",
        R"({"color":"RED"})", R"({"color":1})",
        R"({"inner":{"id":"a","n":3},"items":[{"id":"b"}],"tags":["x"]})",
        R"({"counts":{"a":1},"wrapped":7,"at":"2026-11-29T10:00:00Z"})"}) {
    EXPECT_TRUE(Check(body).ok()) << body << ": " << Check(body);
    EXPECT_TRUE(ProtobufAccepts(body)) << body;
  }
  // Unknown fields are ignored (protobuf's parser is set to ignore them).
  EXPECT_TRUE(Check(R"({"unknownField":{"a":[1]},"other":3})").ok());
}

TEST_F(TranscoderTest, GetRouteIgnoresBodyAndBodyRouteIgnoresQuery) {
  // GET has no body rule: a body is not read.
  const auto history = Request<v1::GetHistoryRequest>(
      "GET", "/api/chat/history", {}, {{"userId", "q"}}, R"({"userId":"b"})");
  ASSERT_TRUE(history.ok()) << history.status();
  EXPECT_EQ(history->user_id(), "q");
  // body "*": everything comes from the body.
  const auto send = Request<v1::SendMessageRequest>(
      "POST", "/api/chat/send", {}, {{"userId", "q"}},
      R"({"userId":"b","message":"m"})");
  ASSERT_TRUE(send.ok()) << send.status();
  EXPECT_EQ(send->user_id(), "b");
}

// Parses printed JSON back into a Struct to look at it field by field.
google::protobuf::Struct Parsed(const std::string& json) {
  google::protobuf::Struct parsed;
  const auto status =
      google::protobuf::util::JsonStringToMessage(json, &parsed);
  EXPECT_TRUE(status.ok()) << json;
  return parsed;
}

TEST(ResponseToJsonTest, PrintsDefaultsAndJsonNames) {
  v1::ListSessionsResponse list;
  list.add_sessions()->set_id("s1");
  auto json = ResponseToJson(list);
  ASSERT_TRUE(json.ok());
  const google::protobuf::Struct printed_list = Parsed(*json);
  const auto& session = printed_list.fields()
                            .at("sessions")
                            .list_value()
                            .values(0)
                            .struct_value();
  EXPECT_EQ(session.fields().at("messageCount").number_value(), 0);
  EXPECT_EQ(session.fields().at("title").string_value(), "");
  EXPECT_EQ(session.fields().at("lastMessage").string_value(), "");
  EXPECT_FALSE(session.fields().contains("message_count"));

  v1::GetSessionResponse get;
  get.mutable_session()->set_id("s1");
  json = ResponseToJson(get);
  ASSERT_TRUE(json.ok());
  const google::protobuf::Struct printed_get = Parsed(*json);
  const auto& s = printed_get.fields().at("session").struct_value();
  ASSERT_TRUE(s.fields().contains("messages")) << *json;
  EXPECT_TRUE(s.fields().at("messages").has_list_value()) << *json;
  EXPECT_EQ(s.fields().at("messages").list_value().values_size(), 0);
  EXPECT_NE(json->find("\"messages\":[]"), std::string::npos) << *json;

  // An empty repeated field at the top level too.
  json = ResponseToJson(v1::ListSessionsResponse());
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(*json, R"({"sessions":[]})");
}

TEST(ResponseToJsonTest, OptionalSetToZeroIsPrintedUnsetIsNot) {
  v1::SendMessageResponse send;
  send.set_session_id("s1");
  send.set_remaining_credits(0);
  auto json = ResponseToJson(send);
  ASSERT_TRUE(json.ok());
  EXPECT_NE(json->find("\"remainingCredits\":0"), std::string::npos) << *json;

  // Unset (unlimited plan): absent, as the proto says — a 0 would lie.
  send.clear_remaining_credits();
  json = ResponseToJson(send);
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(json->find("remainingCredits"), std::string::npos) << *json;
}

TEST(ResponseToJsonTest, EnumNamesAsDocumented) {
  v1::GetUserStatsResponse stats;
  stats.mutable_stats()->set_plan(v1::FREE);
  stats.mutable_stats()->set_status(v1::ACTIVE);
  stats.mutable_stats()->set_remaining_credits(5);
  auto json = ResponseToJson(stats);
  ASSERT_TRUE(json.ok());
  const google::protobuf::Struct printed = Parsed(*json);
  const auto& s = printed.fields().at("stats").struct_value();
  EXPECT_EQ(s.fields().at("plan").string_value(), "FREE");
  EXPECT_EQ(s.fields().at("status").string_value(), "ACTIVE");
  EXPECT_EQ(s.fields().at("totalChats").number_value(), 0);
  EXPECT_EQ(s.fields().at("totalMessages").number_value(), 0);
  EXPECT_EQ(s.fields().at("remainingCredits").number_value(), 5);

  v1::ChatMessage message;
  message.set_role(v1::ASSISTANT);
  json = ResponseToJson(message);
  ASSERT_TRUE(json.ok());
  EXPECT_NE(json->find("\"role\":\"ASSISTANT\""), std::string::npos) << *json;
}

TEST(ResponseToJsonTest, TimestampsAreRfc3339Utc) {
  v1::ChatMessage message;
  message.mutable_created_at()->set_seconds(
      1705312800);  // 2024-01-15T10:00:00Z
  auto json = ResponseToJson(message);
  ASSERT_TRUE(json.ok());
  EXPECT_NE(json->find("\"createdAt\":\"2024-01-15T10:00:00Z\""),
            std::string::npos)
      << *json;
}

// The gRPC client's settings as the binary reads them: a target that does
// not parse stops coach-proxy at start (naming the variable), the client is
// one of two, a keepalive time of 0 is allowed (no PINGs).
absl::StatusOr<Startup<ProxyConfig>> LoadArgs(std::vector<std::string> args) {
  args.insert(args.begin(), "coach-proxy");
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  return LoadProxyConfig(static_cast<int>(argv.size()), argv.data());
}

TEST(UpstreamSettingsTest, TargetClientAndKeepalive) {
  for (const char* bad : {"dns:///", "host:0", "ipv4:", "[::1"}) {
    auto loaded = LoadArgs({absl::StrCat("--grpc_target=", bad)});
    ASSERT_FALSE(loaded.ok()) << bad;
    EXPECT_NE(loaded.status().message().find("COACH_GRPC_TARGET"),
              std::string::npos)
        << loaded.status();
  }
  auto loaded =
      LoadArgs({"--grpc_target=dns:///coach:50051", "--upstream_client=grpc",
                "--upstream_keepalive_time=0"});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.upstream_client, proxy::UpstreamClient::kGrpc);
  EXPECT_EQ(loaded->config.upstream_keepalive_time, absl::ZeroDuration());
  EXPECT_FALSE(LoadArgs({"--upstream_client=curl"}).ok());
  EXPECT_FALSE(LoadArgs({"--upstream_keepalive_timeout=0"}).ok());
  EXPECT_FALSE(LoadArgs({"--upstream_max_header_list_bytes=100"}).ok());
  const ProxyConfig defaults;
  EXPECT_EQ(defaults.upstream_client, proxy::UpstreamClient::kNative);
  EXPECT_EQ(defaults.upstream_keepalive_time, absl::Seconds(10));
  EXPECT_EQ(defaults.upstream_keepalive_timeout, absl::Seconds(5));
}

}  // namespace
}  // namespace coach::proxy
