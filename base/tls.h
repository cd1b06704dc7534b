// TLS contexts made from PEM files, rebuilt when the files change
// (cert-manager style rotation: the files are replaced in place, or a
// symlink swapped) and on demand (SIGHUP). OpenSSL through Boost.Asio's
// ssl::context; no cryptography of ours.
//
// A TlsContextSource owns the current context (a shared_ptr: a connection
// keeps the one it started with for its whole life). Current() looks at the
// files (mtime, ctime, size, inode; through symlinks) at most once per
// `check_interval`, and builds a new context when any changed. A rebuild
// that fails (a half-written file, a key that does not match the new
// certificate yet) keeps the context in use, logs a warning once per
// change, and is tried again at the next check. Reload() rebuilds at once.
//
// Every error names the setting and the file, never the content: no key
// material reaches a log or a message.
//
// What a context does:
// - kServer: presents `cert_file` (a chain, leaf first) and `key_file`;
//   with `ca_file`, requires a client certificate that chains to it
//   (mutual TLS). ALPN: selects the first of `alpn` the client offers (a
//   client that offers none still gets through).
// - kClient: verifies the server's chain against `ca_file` (required),
//   presents `cert_file`/`key_file` when set (both or neither); offers
//   `alpn`. The name to check is per connection (PrepareClient).
// TLS 1.2 at least.
//
// Thread-safety: TlsContextSource is thread-safe (a mutex held while the
// files are looked at or a context is built, never during a handshake).
// The contexts are OpenSSL SSL_CTXs, which several threads may use at once
// to create connections.
#ifndef COACH_BASE_TLS_H_
#define COACH_BASE_TLS_H_

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace coach {

enum class TlsRole { kClient, kServer };

struct TlsOptions {
  TlsRole role = TlsRole::kServer;
  // PEM files; empty: unused. The *_setting fields name where each came
  // from ("COACH_HTTP_TLS_CERT (--http_tls_cert)") for messages.
  std::string cert_file;
  std::string key_file;
  std::string ca_file;
  std::string cert_setting = "certificate";
  std::string key_setting = "key";
  std::string ca_setting = "CA";
  // ALPN protocol names ("h2", "http/1.1"); empty: no ALPN.
  std::vector<std::string> alpn;
  // Files looked at for a change at most this often; zero: only Reload().
  absl::Duration check_interval = absl::Seconds(1);
};

class TlsContextSource {
 public:
  // Builds the first context now: an unreadable file, a file that is not
  // PEM, a key that does not match its certificate, one of cert/key
  // without the other, a server without both, a client without a CA are
  // INVALID_ARGUMENT, naming the setting and the path.
  static absl::StatusOr<std::shared_ptr<TlsContextSource>> Create(
      TlsOptions options);

  // The context to start a new connection with (never null).
  std::shared_ptr<boost::asio::ssl::context> Current();

  // Rebuilds now from the files. OK with a description for a log line
  // ("COACH_X_TLS_CERT /p (CN=..., valid until ...)"); else the error, the
  // context in use staying.
  absl::StatusOr<std::string> Reload();

  // The certificate presented now, for logs: "<path> (<subject>, until
  // <date>)"; or the CA file's path for a client without a certificate.
  std::string Describe();

  const TlsOptions& options() const { return options_; }

 private:
  struct FileStamp {
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    int64_t size = -1;
    uint64_t inode = 0;
    bool operator==(const FileStamp&) const = default;
  };

  explicit TlsContextSource(TlsOptions options);
  std::vector<FileStamp> Stamps() const;
  absl::Status RebuildLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TlsOptions options_;
  absl::Mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> context_ ABSL_GUARDED_BY(mu_);
  std::string description_ ABSL_GUARDED_BY(mu_);
  std::vector<FileStamp> stamps_ ABSL_GUARDED_BY(mu_);
  // The stamps a failed rebuild saw (warned once for them).
  std::vector<FileStamp> failed_stamps_ ABSL_GUARDED_BY(mu_);
  absl::Time next_check_ ABSL_GUARDED_BY(mu_);
};

// Builds one context from `options` and drops it: the startup check of
// files handed to another library (gRPC's credentials read them
// themselves). The same errors as TlsContextSource::Create; OK with the
// description of what would be presented.
absl::StatusOr<std::string> CheckTlsFiles(const TlsOptions& options);

// A check interval as gRPC's file watcher takes it: whole seconds, rounded
// up, at least 1 (and at most a day).
unsigned int TlsWatchSeconds(absl::Duration interval);

// A client connection's checks of the server: its certificate must name
// `name` (a DNS name, or an IP address literal, matched against the
// certificate's subjectAltName); a DNS name is also sent as SNI. False if
// OpenSSL refused the name.
bool PrepareTlsClient(SSL* ssl, absl::string_view name);

// After a client handshake with ALPN offered: OK if the server selected
// `protocol`, else FAILED_PRECONDITION saying what it did.
absl::Status CheckAlpn(const SSL* ssl, absl::string_view protocol);

}  // namespace coach

#endif  // COACH_BASE_TLS_H_
