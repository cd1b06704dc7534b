// TLS between the parts, with the real binaries as child processes and
// certificates made by the `openssl` command at test time (a throwaway CA
// in a temporary folder; no key is checked in):
// - coach-server's mutual TLS: a client of its CA accepted, one without a
//   certificate or of another CA refused, plaintext refused;
// - coach-proxy -> coach-server, for both clients (native and grpc): mutual
//   TLS serves; another CA, another name, no client certificate, or
//   plaintext against TLS answer 503 and never data; a CA file replaced
//   while it runs is used by the next handshake;
// - coach-proxy's HTTPS front, through `curl --cacert` (a read and a
//   streamed reply), and its certificate replaced (on change, on SIGHUP);
// - coach-server's certificate rotated: seen by a new handshake
//   (`openssl s_client`) within seconds;
// - configuration errors stop the start with a message naming the setting,
//   and no log ever holds key material.
// Every wait polls with a deadline; none sleeps to synchronise.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/tls.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "http/event_loop.h"
#include "http/server.h"
#include "tests/support/ports.h"
#include "tests/support/spawn.h"
#include "tests/support/temp_dir.h"

namespace coach::testing {
namespace {

using TlsTestEnv = std::map<std::string, std::string>;
using TlsTestClock = std::chrono::steady_clock;

constexpr auto kTlsTestStartTimeout = std::chrono::seconds(30);
// A changed file is looked at within 1 s (the tests' check interval); the
// rest is reconnection backoff and a loaded machine.
constexpr auto kTlsTestRotationTimeout = std::chrono::seconds(20);

std::string TlsTestReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

// Polls `done` every 20 ms until it holds or `timeout` passes.
bool TlsTestWaitFor(std::chrono::milliseconds timeout,
                    const std::function<bool()>& done) {
  const auto deadline = TlsTestClock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (TlsTestClock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool TlsTestListening(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  const bool connected =
      connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return connected;
}

struct TlsTestCommandResult {
  int exit_code = -1;
  std::string output;  // stdout (stderr too when the command redirects it)
};

// Runs `command` through /bin/sh; its stdout.
TlsTestCommandResult TlsTestRun(const std::string& command) {
  TlsTestCommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> chunk;
  size_t n = 0;
  while ((n = fread(chunk.data(), 1, chunk.size(), pipe)) > 0) {
    result.output.append(chunk.data(), n);
  }
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// A certificate authority and the certificates it signs, as PEM files in
// `dir`: <name>.pem and <name>.key. EC P-256 keys (quick to make).
class TlsTestPki {
 public:
  explicit TlsTestPki(std::string dir) : dir_(std::move(dir)) {}

  std::string Pem(const std::string& name) const {
    return dir_ + "/" + name + ".pem";
  }
  std::string Key(const std::string& name) const {
    return dir_ + "/" + name + ".key";
  }

  bool MakeCa(const std::string& name) {
    return Ok(absl::StrCat(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
        "-nodes -days 2 -subj /CN=",
        name, " -keyout ", Key(name), " -out ", Pem(name)));
  }

  // A server certificate for 127.0.0.1 and localhost, common name `cn`.
  bool IssueServer(const std::string& ca, const std::string& name,
                   const std::string& cn) {
    return Issue(ca, name, cn,
                 "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                 "extendedKeyUsage=serverAuth\n");
  }
  bool IssueClient(const std::string& ca, const std::string& name) {
    return Issue(ca, name, name, "extendedKeyUsage=clientAuth\n");
  }

  // Replaces `target`'s files by `source`'s as cert-manager does: each
  // written aside, then renamed over (a reader sees an old file or a new
  // one, never half of one).
  bool Replace(const std::string& target, const std::string& source) {
    std::error_code error;
    for (const auto& [from, to] : {std::pair{Key(source), Key(target)},
                                   std::pair{Pem(source), Pem(target)}}) {
      std::filesystem::copy_file(
          from, to + ".new", std::filesystem::copy_options::overwrite_existing,
          error);
      if (error) return false;
      std::filesystem::rename(to + ".new", to, error);
      if (error) return false;
    }
    return true;
  }

 private:
  bool Issue(const std::string& ca, const std::string& name,
             const std::string& cn, const std::string& extensions) {
    const std::string ext = dir_ + "/" + name + ".ext";
    std::ofstream(ext) << extensions;
    const std::string csr = dir_ + "/" + name + ".csr";
    return Ok(absl::StrCat(
               "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
               "-nodes -subj /CN=",
               cn, " -keyout ", Key(name), " -out ", csr)) &&
           Ok(absl::StrCat("openssl x509 -req -days 2 -in ", csr, " -CA ",
                           Pem(ca), " -CAkey ", Key(ca), " -set_serial ",
                           ++serial_, " -extfile ", ext, " -out ", Pem(name)));
  }
  static bool Ok(const std::string& command) {
    return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
  }

  const std::string dir_;
  int serial_ = 1000;
};

// A child process (coach-server or coach-proxy) with exactly `env`, its
// output appended to `log`. Killed and reaped on destruction.
class TlsTestProcess {
 public:
  TlsTestProcess(const std::string& binary, const TlsTestEnv& env,
                 std::string log, const std::vector<std::string>& args = {})
      : log_(std::move(log)) {
    std::vector<std::string> argv = {binary};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = SpawnChild(std::move(argv), env, log_);
  }
  ~TlsTestProcess() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  TlsTestProcess(const TlsTestProcess&) = delete;
  TlsTestProcess& operator=(const TlsTestProcess&) = delete;

  bool started() const { return pid_ > 0; }
  std::string Log() const { return TlsTestReadFile(log_); }
  void Signal(int signal) {
    if (pid_ > 0) kill(pid_, signal);
  }
  bool Running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return true;
    exit_status_ = status;
    pid_ = -1;
    return false;
  }
  // The exit status once it exited by itself within `timeout`.
  std::optional<int> WaitForExit(std::chrono::milliseconds timeout) {
    TlsTestWaitFor(timeout, [this] { return !Running(); });
    return pid_ <= 0 ? exit_status_ : std::nullopt;
  }

 private:
  const std::string log_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
};

struct TlsTestHttpAnswer {
  int status = 0;  // 0: no HTTP answer (refused handshake, curl error)
  std::string body;
};

// One request with the curl command line (an independent TLS client);
// `extra`: more curl arguments (--cacert, -X POST ...).
TlsTestHttpAnswer TlsTestCurl(const std::string& url,
                              const std::string& extra = "") {
  const TlsTestCommandResult result =
      TlsTestRun(absl::StrCat("curl -sS -m 15 ", extra,
                              " -w '\\n%{http_code}' '", url, "' 2>/dev/null"));
  TlsTestHttpAnswer answer;
  const size_t last = result.output.rfind('\n');
  if (last == std::string::npos) return answer;
  answer.body = result.output.substr(0, last);
  answer.status = std::atoi(result.output.c_str() + last + 1);
  return answer;
}

// The subject of the certificate a new TLS handshake with 127.0.0.1:`port`
// is shown (openssl s_client, presenting `cert`/`key` when set); "" if
// the handshake failed.
std::string TlsTestServedSubject(int port, const std::string& ca,
                                 const std::string& cert = "",
                                 const std::string& key = "") {
  const std::string identity =
      cert.empty() ? "" : absl::StrCat(" -cert ", cert, " -key ", key);
  return TlsTestRun(
             absl::StrCat("openssl s_client -connect 127.0.0.1:", port,
                          " -CAfile ", ca, identity,
                          " -verify_return_error </dev/null 2>/dev/null | "
                          "openssl x509 -noout -subject 2>/dev/null"))
      .output;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    ASSERT_TRUE(pki_.MakeCa("ca"));
    ASSERT_TRUE(pki_.MakeCa("other-ca"));
    ASSERT_TRUE(pki_.IssueServer("ca", "server", "coach-server-1"));
    ASSERT_TRUE(pki_.IssueServer("ca", "server-next", "coach-server-2"));
    ASSERT_TRUE(pki_.IssueClient("ca", "proxy-client"));
    ASSERT_TRUE(pki_.IssueClient("other-ca", "stranger-client"));
  }

  void TearDown() override {
    // Whatever happened, no key reached a log: neither a PEM header nor a
    // line of any key's content; and no sanitizer reported.
    std::vector<std::string> secrets = {"PRIVATE KEY"};
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      if (entry.path().extension() != ".key") continue;
      std::istringstream key(TlsTestReadFile(entry.path()));
      std::string line;
      while (std::getline(key, line)) {
        if (line.size() > 16 && !absl::StartsWith(line, "-----")) {
          secrets.push_back(line);
        }
      }
    }
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      if (entry.path().extension() != ".log") continue;
      const std::string log = TlsTestReadFile(entry.path());
      for (const std::string& secret : secrets) {
        EXPECT_FALSE(absl::StrContains(log, secret)) << entry.path();
      }
      // The children of a sanitizer build report into their logs (and are
      // killed, so their exit status says nothing).
      EXPECT_FALSE(absl::StrContains(log, "Sanitizer")) << log;
    }
  }

  TlsTestEnv ServerEnv(int port, bool mutual) const {
    TlsTestEnv env = {{"COACH_DB_PATH", dir_.File("coach.db")},
                      {"COACH_GRPC_LISTEN", absl::StrCat("127.0.0.1:", port)},
                      {"COACH_GRPC_TLS_CERT", pki_.Pem("server")},
                      {"COACH_GRPC_TLS_KEY", pki_.Key("server")},
                      {"COACH_GRPC_TLS_CHECK_INTERVAL", "1s"},
                      {"COACH_MEMORY_RELEASE_INTERVAL", "0"}};
    if (mutual) env["COACH_GRPC_TLS_CLIENT_CA"] = pki_.Pem("ca");
    return env;
  }

  // A coach-server on a free port, listening (or the test fails).
  int StartServer(TlsTestEnv env, int port = 0) {
    if (port == 0) port = FreeLoopbackPort();
    if (env.empty()) env = ServerEnv(port, /*mutual=*/true);
    processes_.push_back(std::make_unique<TlsTestProcess>(
        COACH_SERVER_BINARY, env, dir_.File("server.log")));
    TlsTestProcess& process = *processes_.back();
    EXPECT_TRUE(TlsTestWaitFor(kTlsTestStartTimeout, [&] {
      return TlsTestListening(port) || !process.Running();
    }));
    EXPECT_TRUE(process.Running()) << process.Log();
    return port;
  }

  TlsTestEnv ProxyEnv(int http_port, int server_port,
                      const std::string& client) const {
    return {{"COACH_HTTP_LISTEN", absl::StrCat("127.0.0.1:", http_port)},
            {"COACH_GRPC_TARGET", absl::StrCat("127.0.0.1:", server_port)},
            {"COACH_UPSTREAM_CLIENT", client},
            // A refused server shows as 503 within a second.
            {"COACH_UPSTREAM_READ_DEADLINE", "1s"},
            {"COACH_UPSTREAM_RECONNECT_MAX", "200ms"},
            {"COACH_PROXY_TLS_CHECK_INTERVAL", "1s"}};
  }
  // The proxy's environment for mutual TLS to the server.
  TlsTestEnv MutualProxyEnv(int http_port, int server_port,
                            const std::string& client) const {
    TlsTestEnv env = ProxyEnv(http_port, server_port, client);
    env["COACH_UPSTREAM_TLS_CA"] = pki_.Pem("ca");
    env["COACH_UPSTREAM_TLS_CERT"] = pki_.Pem("proxy-client");
    env["COACH_UPSTREAM_TLS_KEY"] = pki_.Key("proxy-client");
    return env;
  }

  // A coach-proxy with `env` (its COACH_HTTP_LISTEN's port), listening.
  TlsTestProcess& StartProxy(const TlsTestEnv& env, int http_port) {
    processes_.push_back(std::make_unique<TlsTestProcess>(
        COACH_PROXY_BINARY, env, dir_.File("proxy.log")));
    TlsTestProcess& process = *processes_.back();
    EXPECT_TRUE(TlsTestWaitFor(kTlsTestStartTimeout, [&] {
      return TlsTestListening(http_port) || !process.Running();
    }));
    EXPECT_TRUE(process.Running()) << process.Log();
    return process;
  }

  static std::string StatsUrl(int port, const std::string& scheme = "http") {
    return absl::StrCat(scheme, "://127.0.0.1:", port,
                        "/api/user/stats?userId=tls-user");
  }

  // Polls until the proxy answers the stats read 200 (its first connection
  // may still be in its handshake on a loaded machine).
  static bool ServesStats(int port, const std::string& scheme = "http",
                          const std::string& curl_extra = "") {
    return TlsTestWaitFor(kTlsTestStartTimeout, [&] {
      const TlsTestHttpAnswer answer =
          TlsTestCurl(StatsUrl(port, scheme), curl_extra);
      return answer.status == 200 &&
             absl::StrContains(answer.body, "\"remainingCredits\"");
    });
  }

  // 503, and nothing of the server's data.
  static void ExpectUnavailable(int port) {
    const TlsTestHttpAnswer answer = TlsTestCurl(StatsUrl(port));
    EXPECT_EQ(answer.status, 503) << answer.body;
    EXPECT_TRUE(absl::StrContains(answer.body, "UNAVAILABLE")) << answer.body;
    EXPECT_FALSE(absl::StrContains(answer.body, "remainingCredits"))
        << answer.body;
  }

  TempDir dir_;
  TlsTestPki pki_{dir_.path()};
  std::vector<std::unique_ptr<TlsTestProcess>> processes_;
};

// coach-server alone, with gRPC's own client: mutual TLS.

std::shared_ptr<grpc::Channel> TlsTestChannel(
    int port, const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                   credentials, args);
}

grpc::Status TlsTestHealth(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  return grpc::health::v1::Health::NewStub(channel)->Check(&context, request,
                                                           &response);
}

TEST_F(TlsTest, MutualTlsServerAcceptsOnlyClientsOfItsCa) {
  const int port = StartServer({});
  grpc::SslCredentialsOptions ours;
  ours.pem_root_certs = TlsTestReadFile(pki_.Pem("ca"));
  ours.pem_cert_chain = TlsTestReadFile(pki_.Pem("proxy-client"));
  ours.pem_private_key = TlsTestReadFile(pki_.Key("proxy-client"));
  EXPECT_TRUE(
      TlsTestHealth(TlsTestChannel(port, grpc::SslCredentials(ours))).ok());

  grpc::SslCredentialsOptions anonymous;
  anonymous.pem_root_certs = ours.pem_root_certs;
  EXPECT_EQ(TlsTestHealth(TlsTestChannel(port, grpc::SslCredentials(anonymous)))
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);

  grpc::SslCredentialsOptions stranger = ours;
  stranger.pem_cert_chain = TlsTestReadFile(pki_.Pem("stranger-client"));
  stranger.pem_private_key = TlsTestReadFile(pki_.Key("stranger-client"));
  EXPECT_EQ(TlsTestHealth(TlsTestChannel(port, grpc::SslCredentials(stranger)))
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);

  EXPECT_EQ(
      TlsTestHealth(TlsTestChannel(port, grpc::InsecureChannelCredentials()))
          .error_code(),
      grpc::StatusCode::UNAVAILABLE);
  // An independent client too: openssl, with and without its certificate.
  EXPECT_TRUE(absl::StrContains(
      TlsTestServedSubject(port, pki_.Pem("ca"), pki_.Pem("proxy-client"),
                           pki_.Key("proxy-client")),
      "coach-server-1"));
}

TEST_F(TlsTest, ServerCertificateRotationIsSeenByANewHandshake) {
  const int port = StartServer({});
  const auto served = [&] {
    return TlsTestServedSubject(port, pki_.Pem("ca"), pki_.Pem("proxy-client"),
                                pki_.Key("proxy-client"));
  };
  ASSERT_TRUE(absl::StrContains(served(), "coach-server-1"));
  // A connection made before the rotation keeps working after it.
  grpc::SslCredentialsOptions ours;
  ours.pem_root_certs = TlsTestReadFile(pki_.Pem("ca"));
  ours.pem_cert_chain = TlsTestReadFile(pki_.Pem("proxy-client"));
  ours.pem_private_key = TlsTestReadFile(pki_.Key("proxy-client"));
  auto before = TlsTestChannel(port, grpc::SslCredentials(ours));
  ASSERT_TRUE(TlsTestHealth(before).ok());

  ASSERT_TRUE(pki_.Replace("server", "server-next"));
  EXPECT_TRUE(TlsTestWaitFor(kTlsTestRotationTimeout, [&] {
    return absl::StrContains(served(), "coach-server-2");
  })) << served();
  EXPECT_TRUE(TlsTestHealth(before).ok());
}

TEST_F(TlsTest, BadTlsFilesStopTheStartNamingTheSetting) {
  struct Case {
    const char* binary;
    TlsTestEnv env;
    std::string message;
  };
  const std::string missing = dir_.File("missing.pem");
  const int port = FreeLoopbackPort();
  const std::string listen = absl::StrCat("127.0.0.1:", port);
  const TlsTestEnv server = {{"COACH_DB_PATH", dir_.File("coach.db")},
                             {"COACH_GRPC_LISTEN", listen}};
  const TlsTestEnv proxy = {{"COACH_HTTP_LISTEN", listen}};
  const auto with = [](TlsTestEnv env, const TlsTestEnv& more) {
    for (const auto& [name, value] : more) env[name] = value;
    return env;
  };
  const std::vector<Case> cases = {
      {COACH_SERVER_BINARY,
       with(server, {{"COACH_GRPC_TLS_CERT", pki_.Pem("server")}}),
       "COACH_GRPC_TLS_KEY"},
      {COACH_SERVER_BINARY,
       with(server, {{"COACH_GRPC_TLS_CERT", pki_.Pem("server")},
                     {"COACH_GRPC_TLS_KEY", pki_.Key("server-next")}}),
       "does not match"},
      {COACH_SERVER_BINARY,
       with(server, {{"COACH_GRPC_TLS_CERT", missing},
                     {"COACH_GRPC_TLS_KEY", pki_.Key("server")}}),
       "cannot read"},
      {COACH_SERVER_BINARY,
       with(server, {{"COACH_GRPC_TLS_CERT", pki_.Pem("server")},
                     {"COACH_GRPC_TLS_KEY", pki_.Key("server")},
                     {"COACH_GRPC_TLS_CLIENT_CA", pki_.Key("ca")}}),
       "COACH_GRPC_TLS_CLIENT_CA"},
      {COACH_PROXY_BINARY,
       with(proxy, {{"COACH_HTTP_TLS_KEY", pki_.Key("server")}}),
       "COACH_HTTP_TLS_CERT"},
      {COACH_PROXY_BINARY,
       with(proxy, {{"COACH_HTTP_TLS_CERT", pki_.Pem("server")},
                    {"COACH_HTTP_TLS_KEY", pki_.Key("proxy-client")}}),
       "does not match"},
      {COACH_PROXY_BINARY, with(proxy, {{"COACH_UPSTREAM_TLS_CA", missing}}),
       "cannot read"},
      {COACH_PROXY_BINARY,
       with(proxy, {{"COACH_UPSTREAM_TLS_CERT", pki_.Pem("proxy-client")},
                    {"COACH_UPSTREAM_TLS_KEY", pki_.Key("proxy-client")}}),
       "COACH_UPSTREAM_TLS_CA"},
  };
  int index = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("case ", index, ": ", c.message));
    const std::string log = dir_.File(absl::StrCat("config-", index++, ".log"));
    TlsTestProcess process(c.binary, c.env, log);
    const std::optional<int> status =
        process.WaitForExit(std::chrono::seconds(15));
    ASSERT_TRUE(status.has_value()) << "still running";
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) != 0);
    EXPECT_TRUE(absl::StrContains(process.Log(), c.message)) << process.Log();
  }
}

// coach-proxy -> coach-server, with each client.
class TlsUpstreamTest : public TlsTest,
                        public ::testing::WithParamInterface<std::string> {};

INSTANTIATE_TEST_SUITE_P(Clients, TlsUpstreamTest,
                         ::testing::Values("native", "grpc"),
                         [](const auto& info) { return info.param; });

TEST_P(TlsUpstreamTest, MutualTlsServesReadsAndStreams) {
  const int server = StartServer({});
  const int http = FreeLoopbackPort();
  StartProxy(MutualProxyEnv(http, server, GetParam()), http);
  EXPECT_TRUE(ServesStats(http)) << TlsTestReadFile(dir_.File("proxy.log"));
  const TlsTestHttpAnswer stream = TlsTestCurl(
      absl::StrCat("http://127.0.0.1:", http, "/api/chat/send/stream"),
      "-N -X POST -H 'Content-Type: application/json' "
      "-d '{\"userId\":\"tls-user\",\"message\":\"Bonjour\"}'");
  EXPECT_EQ(stream.status, 200) << stream.body;
  EXPECT_TRUE(absl::StrContains(stream.body, "data: {\"reply\""))
      << stream.body;
}

TEST_P(TlsUpstreamTest, AnotherCaIs503AndNeverData) {
  const int server = StartServer({});
  const int http = FreeLoopbackPort();
  TlsTestEnv env = MutualProxyEnv(http, server, GetParam());
  env["COACH_UPSTREAM_TLS_CA"] = pki_.Pem("other-ca");
  StartProxy(env, http);
  ExpectUnavailable(http);
}

TEST_P(TlsUpstreamTest, AnotherServerNameIs503TheRightOneServes) {
  const int server = StartServer({});
  const int wrong = FreeLoopbackPort();
  TlsTestEnv env = MutualProxyEnv(wrong, server, GetParam());
  env["COACH_UPSTREAM_TLS_SERVER_NAME"] = "coach.example";
  StartProxy(env, wrong);
  ExpectUnavailable(wrong);
  const int right = FreeLoopbackPort();
  env = MutualProxyEnv(right, server, GetParam());
  env["COACH_UPSTREAM_TLS_SERVER_NAME"] = "localhost";
  StartProxy(env, right);
  EXPECT_TRUE(ServesStats(right));
}

TEST_P(TlsUpstreamTest, NoClientCertificateIs503) {
  const int server = StartServer({});
  const int http = FreeLoopbackPort();
  TlsTestEnv env = ProxyEnv(http, server, GetParam());
  env["COACH_UPSTREAM_TLS_CA"] = pki_.Pem("ca");
  StartProxy(env, http);
  ExpectUnavailable(http);
}

TEST_P(TlsUpstreamTest, PlaintextAgainstTlsIs503AndTlsAgainstPlaintextToo) {
  const int server = StartServer({});
  const int plain = FreeLoopbackPort();
  StartProxy(ProxyEnv(plain, server, GetParam()), plain);
  ExpectUnavailable(plain);

  const int plain_server_port = FreeLoopbackPort();
  TlsTestEnv plain_server = ServerEnv(plain_server_port, /*mutual=*/false);
  plain_server.erase("COACH_GRPC_TLS_CERT");
  plain_server.erase("COACH_GRPC_TLS_KEY");
  plain_server["COACH_DB_PATH"] = dir_.File("plain.db");
  StartServer(plain_server, plain_server_port);
  const int tls = FreeLoopbackPort();
  StartProxy(MutualProxyEnv(tls, plain_server_port, GetParam()), tls);
  ExpectUnavailable(tls);
}

TEST_P(TlsUpstreamTest, ReplacedCaFileIsUsedByTheNextHandshake) {
  const int server = StartServer({});
  const int http = FreeLoopbackPort();
  // The proxy's own copy of its CA file, wrong at first.
  const std::string ca = dir_.File("proxy-ca.pem");
  std::filesystem::copy_file(pki_.Pem("other-ca"), ca);
  TlsTestEnv env = MutualProxyEnv(http, server, GetParam());
  env["COACH_UPSTREAM_TLS_CA"] = ca;
  StartProxy(env, http);
  ExpectUnavailable(http);
  std::filesystem::copy_file(pki_.Pem("ca"), ca + ".new");
  std::filesystem::rename(ca + ".new", ca);
  EXPECT_TRUE(TlsTestWaitFor(kTlsTestRotationTimeout, [&] {
    return TlsTestCurl(StatsUrl(http)).status == 200;
  })) << TlsTestReadFile(dir_.File("proxy.log"));
}

// The native client re-reads its files on SIGHUP at once (gRPC's client
// has only its watcher: docs/operations.md).
TEST_F(TlsTest, SighupMakesTheNativeClientUseTheReplacedCaFile) {
  const int server = StartServer({});
  const int http = FreeLoopbackPort();
  const std::string ca = dir_.File("proxy-ca.pem");
  std::filesystem::copy_file(pki_.Pem("other-ca"), ca);
  TlsTestEnv env = MutualProxyEnv(http, server, "native");
  env["COACH_UPSTREAM_TLS_CA"] = ca;
  // Never looked at by itself during the test: only SIGHUP re-reads.
  env["COACH_PROXY_TLS_CHECK_INTERVAL"] = "1h";
  TlsTestProcess& proxy = StartProxy(env, http);
  ExpectUnavailable(http);
  std::filesystem::copy_file(pki_.Pem("ca"), ca + ".new");
  std::filesystem::rename(ca + ".new", ca);
  ExpectUnavailable(http);
  proxy.Signal(SIGHUP);
  EXPECT_TRUE(TlsTestWaitFor(kTlsTestRotationTimeout, [&] {
    return absl::StrContains(proxy.Log(), "SIGHUP: re-read upstream TLS");
  })) << proxy.Log();
  EXPECT_TRUE(ServesStats(http)) << proxy.Log();
}

// coach-proxy's HTTPS front (plaintext to a plaintext coach-server).
class TlsFrontTest : public TlsTest {
 protected:
  int StartPlainServer() {
    const int port = FreeLoopbackPort();
    TlsTestEnv env = ServerEnv(port, /*mutual=*/false);
    env.erase("COACH_GRPC_TLS_CERT");
    env.erase("COACH_GRPC_TLS_KEY");
    return StartServer(env, port);
  }
  TlsTestEnv HttpsProxyEnv(int http, int server) {
    TlsTestEnv env = ProxyEnv(http, server, "native");
    env["COACH_HTTP_TLS_CERT"] = pki_.Pem("server");
    env["COACH_HTTP_TLS_KEY"] = pki_.Key("server");
    return env;
  }
  std::string Cacert() const { return "--cacert " + pki_.Pem("ca"); }
};

TEST_F(TlsFrontTest, HttpsWithCurlCacertServesReadsAndStreams) {
  const int server = StartPlainServer();
  const int http = FreeLoopbackPort();
  StartProxy(HttpsProxyEnv(http, server), http);
  EXPECT_TRUE(ServesStats(http, "https", Cacert()));
  const TlsTestHttpAnswer stream = TlsTestCurl(
      absl::StrCat("https://127.0.0.1:", http, "/api/chat/send/stream"),
      Cacert() +
          " -N -X POST -H 'Content-Type: application/json' "
          "-d '{\"userId\":\"tls-user\",\"message\":\"Bonjour\"}'");
  EXPECT_EQ(stream.status, 200) << stream.body;
  EXPECT_TRUE(absl::StrContains(stream.body, "data: {\"reply\""))
      << stream.body;
  // Without the CA, curl refuses the server; plain HTTP gets no answer.
  EXPECT_EQ(TlsTestCurl(StatsUrl(http, "https")).status, 0);
  EXPECT_EQ(TlsTestCurl(StatsUrl(http, "http")).status, 0);
  // Several requests on one kept-alive TLS connection.
  const TlsTestCommandResult twice = TlsTestRun(absl::StrCat(
      "curl -sS -m 15 ", Cacert(), " -w '%{http_code}\\n' -o /dev/null '",
      StatsUrl(http, "https"), "' -o /dev/null '", StatsUrl(http, "https"),
      "' 2>&1"));
  EXPECT_EQ(twice.output, "200\n200\n");
}

TEST_F(TlsFrontTest, ReplacedCertificateServesNewHandshakes) {
  const int server = StartPlainServer();
  const int http = FreeLoopbackPort();
  StartProxy(HttpsProxyEnv(http, server), http);
  ASSERT_TRUE(ServesStats(http, "https", Cacert()));
  EXPECT_TRUE(absl::StrContains(TlsTestServedSubject(http, pki_.Pem("ca")),
                                "coach-server-1"));
  ASSERT_TRUE(pki_.Replace("server", "server-next"));
  EXPECT_TRUE(TlsTestWaitFor(kTlsTestRotationTimeout, [&] {
    return absl::StrContains(TlsTestServedSubject(http, pki_.Pem("ca")),
                             "coach-server-2");
  }));
  EXPECT_TRUE(ServesStats(http, "https", Cacert()));
}

TEST_F(TlsFrontTest, SighupRereadsTheCertificateAtOnce) {
  const int server = StartPlainServer();
  const int http = FreeLoopbackPort();
  TlsTestEnv env = HttpsProxyEnv(http, server);
  // Never looked at by itself during the test: only SIGHUP re-reads.
  env["COACH_PROXY_TLS_CHECK_INTERVAL"] = "1h";
  TlsTestProcess& proxy = StartProxy(env, http);
  ASSERT_TRUE(ServesStats(http, "https", Cacert()));
  ASSERT_TRUE(pki_.Replace("server", "server-next"));
  EXPECT_TRUE(absl::StrContains(TlsTestServedSubject(http, pki_.Pem("ca")),
                                "coach-server-1"));
  proxy.Signal(SIGHUP);
  EXPECT_TRUE(TlsTestWaitFor(kTlsTestRotationTimeout, [&] {
    return absl::StrContains(proxy.Log(), "SIGHUP: re-read HTTPS");
  })) << proxy.Log();
  EXPECT_TRUE(absl::StrContains(TlsTestServedSubject(http, pki_.Pem("ca")),
                                "coach-server-2"));
  EXPECT_TRUE(proxy.Running());
}

// The HTTPS front's server (http/) in this process, with a TLS client of
// Asio's: a client's hang-up is seen through TLS (a close_notify, or the
// connection just closed), and a request pipelined behind one in progress
// is kept for its turn. Every wait is bounded (the client's io_context
// runs for a deadline).
class TlsFrontServerTest : public TlsTest {
 protected:
  // Starts the front on `options` (loopback, the test CA's server
  // certificate, refusals answered with their status) and a client trusting
  // that CA.
  void StartFront(http::ServerOptions options, http::Handler handler) {
    TlsOptions tls;
    tls.role = TlsRole::kServer;
    tls.cert_file = pki_.Pem("server");
    tls.key_file = pki_.Key("server");
    auto source = TlsContextSource::Create(tls);
    ASSERT_TRUE(source.ok()) << source.status();
    options.listen = "127.0.0.1:0";
    options.tls = *source;
    options.refusal = [](http::Refusal refusal, const http::Request&) {
      return http::Response{
          .status = http::StatusOf(refusal), .headers = {}, .body = ""};
    };
    auto server = http::Server::Start(std::move(options), std::move(handler));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    client_context_.load_verify_file(pki_.Pem("ca"));
    client_context_.set_verify_mode(boost::asio::ssl::verify_peer);
  }
  // The server stopped and destroyed here, before a derived fixture's
  // members (an event loop it runs on) go.
  void TearDown() override {
    {
      absl::MutexLock lock(&mu_);
      held_.reset();
    }
    if (server_ != nullptr) server_->Shutdown(absl::ZeroDuration());
    server_.reset();
    TlsTest::TearDown();
  }
  std::shared_ptr<http::Exchange> Held() {
    absl::MutexLock lock(&mu_);
    return held_;
  }

  std::unique_ptr<http::Server> server_;
  absl::Mutex mu_;
  std::shared_ptr<http::Exchange> held_ ABSL_GUARDED_BY(mu_);
  boost::asio::io_context client_loop_;
  boost::asio::ssl::context client_context_{
      boost::asio::ssl::context::tls_client};
  boost::asio::ssl::stream<boost::asio::ip::tcp::socket> client_{
      client_loop_, client_context_};
};

class TlsFrontHangupTest : public TlsFrontServerTest {
 protected:
  void SetUp() override {
    TlsTest::SetUp();
    StartFront({}, [this](std::shared_ptr<http::Exchange> exchange) {
      if (exchange->request().path != "/hold") {
        return exchange->Reply({.status = 200, .headers = {}, .body = "now"});
      }
      exchange->OnCancel([this] { cancelled_.Notify(); });
      absl::MutexLock lock(&mu_);
      held_ = std::move(exchange);
    });
  }

  // Connects, handshakes and sends GET /hold; true once the server holds it.
  bool HoldARequest() {
    boost::system::error_code ec;
    client_.lowest_layer().connect({boost::asio::ip::make_address("127.0.0.1"),
                                    static_cast<uint16_t>(server_->port())},
                                   ec);
    if (!ec) client_.handshake(boost::asio::ssl::stream_base::client, ec);
    if (!ec) Send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    if (ec) return false;
    return TlsTestWaitFor(std::chrono::seconds(10), [this] {
      absl::MutexLock lock(&mu_);
      return held_ != nullptr;
    });
  }
  void Send(const std::string& bytes) {
    boost::system::error_code ec;
    boost::asio::write(client_, boost::asio::buffer(bytes), ec);
    EXPECT_FALSE(ec) << ec.message();
  }
  // Reads into `answers` until `marker` has come (or an error: in `ec`);
  // false if neither within the deadline.
  bool ReadUntil(boost::asio::streambuf& answers, const std::string& marker,
                 boost::system::error_code& ec) {
    bool read = false;
    boost::asio::async_read_until(client_, answers, marker,
                                  [&](boost::system::error_code error, size_t) {
                                    ec = error;
                                    read = true;
                                  });
    return RunClientUntil([&] { return read; });
  }
  // Runs the client's loop until `done` or the deadline.
  bool RunClientUntil(const std::function<bool()>& done) {
    const auto deadline = TlsTestClock::now() + std::chrono::seconds(15);
    while (!done() && TlsTestClock::now() < deadline) {
      client_loop_.restart();
      client_loop_.run_for(std::chrono::milliseconds(20));
    }
    return done();
  }

  absl::Notification cancelled_;
};

TEST_F(TlsFrontHangupTest, CloseNotifyCancelsTheRequestInProgress) {
  ASSERT_TRUE(HoldARequest());
  bool shut = false;
  client_.async_shutdown([&](boost::system::error_code) { shut = true; });
  // The close_notify goes out; the server, which sends none back, cancels.
  EXPECT_TRUE(RunClientUntil([&] { return cancelled_.HasBeenNotified(); }));
}

TEST_F(TlsFrontHangupTest, ClosedConnectionCancelsTheRequestInProgress) {
  ASSERT_TRUE(HoldARequest());
  boost::system::error_code ignored;
  client_.lowest_layer().close(ignored);
  EXPECT_TRUE(cancelled_.WaitForNotificationWithTimeout(absl::Seconds(15)));
}

TEST_F(TlsFrontHangupTest, PipelinedRequestIsKeptForItsTurn) {
  ASSERT_TRUE(HoldARequest());
  // Read by the hang-up watch (or after the answer; either way kept).
  Send("GET /now HTTP/1.1\r\nHost: x\r\n\r\n");
  {
    absl::MutexLock lock(&mu_);
    held_->Reply({.status = 200, .headers = {}, .body = "held"});
  }
  boost::asio::streambuf answers;
  boost::system::error_code read_error;
  ASSERT_TRUE(ReadUntil(answers, "\r\n\r\nnow", read_error));
  EXPECT_FALSE(read_error) << read_error.message();
  const std::string text(boost::asio::buffers_begin(answers.data()),
                         boost::asio::buffers_end(answers.data()));
  EXPECT_LT(text.find("held"), text.find("\r\n\r\nnow")) << text;
  EXPECT_FALSE(cancelled_.HasBeenNotified());
}

// The hang-up watch's read is pending (into the connection's read buffer)
// when a stream starts; starting the stream must not free that buffer
// under it. A request pipelined while the stream runs is answered after it
// (under ASan, a freed buffer is a heap-use-after-free report; without, the
// request was lost and never answered).
TEST_F(TlsFrontHangupTest, RequestPipelinedDuringAStreamIsAnsweredAfterIt) {
  ASSERT_TRUE(HoldARequest());
  {
    absl::MutexLock lock(&mu_);
    held_->StartStream(200, {}, absl::InfiniteDuration(), "");
  }
  // The stream's head arrived: it has started, the watch read is out.
  boost::asio::streambuf answers;
  boost::system::error_code read_error;
  ASSERT_TRUE(ReadUntil(answers, "\r\n\r\n", read_error));
  ASSERT_FALSE(read_error) << read_error.message();
  Send("GET /now HTTP/1.1\r\nHost: x\r\n\r\n");
  {
    absl::MutexLock lock(&mu_);
    held_->Send("streamed");
    held_->Finish();
  }
  ASSERT_TRUE(ReadUntil(answers, "\r\n\r\nnow", read_error))
      << "no answer to /now";
  EXPECT_FALSE(read_error) << read_error.message();
  const std::string text(boost::asio::buffers_begin(answers.data()),
                         boost::asio::buffers_end(answers.data()));
  EXPECT_LT(text.find("streamed"), text.find("\r\n\r\nnow")) << text;
  EXPECT_FALSE(cancelled_.HasBeenNotified());
}

// An HTTP/1.0 stream ends with the connection (no chunks): over TLS, with
// TLS's close_notify, so that the client reads a clean end (asio: eof), not
// a cut (stream_truncated; OpenSSL 3 clients: "unexpected eof"), whether or
// not the handler had the connection watched for a hang-up.
class TlsFrontHttp10Test : public TlsFrontServerTest {
 protected:
  void SetUp() override {
    TlsTest::SetUp();
    StartFront({}, [](std::shared_ptr<http::Exchange> exchange) {
      if (exchange->request().path == "/watched") exchange->OnCancel([] {});
      exchange->StartStream(200, {}, absl::InfiniteDuration(), "");
      exchange->Send("data: un\n\n");
      exchange->Send("data: deux\n\n");
      exchange->Finish();
    });
  }
};

TEST_F(TlsFrontHttp10Test, AStreamEndsWithCloseNotify) {
  namespace net = boost::asio;
  for (const std::string path : {"/plain", "/watched"}) {
    SCOPED_TRACE(path);
    net::ssl::stream<net::ip::tcp::socket> client(client_loop_,
                                                  client_context_);
    boost::system::error_code ec;
    client.lowest_layer().connect({net::ip::make_address("127.0.0.1"),
                                   static_cast<uint16_t>(server_->port())},
                                  ec);
    ASSERT_FALSE(ec) << ec.message();
    client.handshake(net::ssl::stream_base::client, ec);
    ASSERT_FALSE(ec) << ec.message();
    const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\n\r\n");
    net::write(client, net::buffer(request), ec);
    ASSERT_FALSE(ec) << ec.message();
    std::string received;
    char buffer[4096];
    for (;;) {
      const size_t n = client.read_some(net::buffer(buffer), ec);
      received.append(buffer, n);
      if (ec) break;
    }
    EXPECT_EQ(ec, net::error::eof) << ec.message();
    EXPECT_TRUE(absl::EndsWith(received, "data: un\n\ndata: deux\n\n"))
        << received;
    EXPECT_FALSE(absl::StrContains(received, "chunked")) << received;
  }
}

// A stream's chunk over 16 KiB goes out over TLS a record at a time; when
// the stream is cut for its backlog (DoClose) while that write is in
// progress and one of its steps has already completed, the write's next
// step must not read the chunk (queue_.front()) that the cut freed.
class TlsFrontStreamCutTest : public TlsFrontServerTest {
 protected:
  static constexpr size_t kChunk = size_t{16} << 20;
  void SetUp() override {
    TlsTest::SetUp();
    http::ServerOptions options;
    options.loop = &loop_.context();
    options.max_stream_backlog_bytes = kChunk + kChunk / 2;
    StartFront(std::move(options),
               [this](std::shared_ptr<http::Exchange> exchange) {
                 absl::MutexLock lock(&mu_);
                 held_ = std::move(exchange);
               });
  }

  http::EventLoop loop_{1};
};

TEST_F(TlsFrontStreamCutTest, CutDuringAChunkWriteDoesNotReadTheFreedChunk) {
  namespace net = boost::asio;
  auto& socket = client_.next_layer();
  boost::system::error_code ec;
  socket.open(net::ip::tcp::v4(), ec);
  ASSERT_FALSE(ec) << ec.message();
  // A small window: the server's write of the chunk stalls early.
  socket.set_option(net::socket_base::receive_buffer_size(4096), ec);
  socket.connect({net::ip::make_address("127.0.0.1"),
                  static_cast<uint16_t>(server_->port())},
                 ec);
  ASSERT_FALSE(ec) << ec.message();
  client_.handshake(net::ssl::stream_base::client, ec);
  ASSERT_FALSE(ec) << ec.message();
  const std::string get = "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n";
  net::write(client_, net::buffer(get), ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(TlsTestWaitFor(std::chrono::seconds(10),
                             [this] { return Held() != nullptr; }));
  Held()->StartStream(200, {}, absl::InfiniteDuration(), "");
  net::streambuf head;
  net::read_until(client_, head, "\r\n\r\n", ec);
  ASSERT_FALSE(ec) << ec.message();
  // One chunk far larger than the kernel's buffers: its write is in
  // progress (a 16 KiB TLS record at a time) from now on.
  Held()->Send(std::string(kChunk, 'x'));
  // The loop's one thread held: what follows is queued in a known order.
  absl::Notification blocked, release;
  net::post(loop_.context(), [&] {
    blocked.Notify();
    release.WaitForNotification();
  });
  blocked.WaitForNotification();
  // The client takes what is in flight (raw: its TLS is done with), so
  // that the server's stalled write can make its next step...
  socket.non_blocking(true);
  std::vector<char> raw(64 * 1024);
  size_t drained = 0;
  for (;;) {
    const size_t n = socket.read_some(net::buffer(raw), ec);
    if (ec) break;
    drained += n;
  }
  ASSERT_EQ(ec, net::error::would_block) << ec.message();
  ASSERT_GT(drained, 0u);
  // ...after this Send, over the backlog, has cut the stream.
  Held()->Send(std::string(kChunk, 'y'));
  release.Notify();
  // The cut is seen by the client: the end of the connection.
  socket.non_blocking(false);
  for (;;) {
    socket.read_some(net::buffer(raw), ec);
    if (ec) break;
  }
  EXPECT_TRUE(ec == net::error::eof || ec == net::error::connection_reset)
      << ec.message();
}

}  // namespace
}  // namespace coach::testing
