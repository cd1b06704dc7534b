#include "base/tls.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/log.h"

namespace coach {
namespace {

namespace ssl = boost::asio::ssl;
using ErrorCode = boost::system::error_code;

absl::Status FileError(absl::string_view setting, const std::string& path,
                       absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(setting, " ", path, ": ", what));
}

// A readable regular file, or why not (errno's words: no content).
absl::Status Readable(absl::string_view setting, const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return FileError(setting, path,
                     absl::StrCat("cannot read: ", std::strerror(errno)));
  }
  ::close(fd);
  return absl::OkStatus();
}

// The protocols as ALPN's wire format: each name preceded by its length.
std::string AlpnWire(const std::vector<std::string>& protocols) {
  std::string wire;
  for (const std::string& name : protocols) {
    if (name.empty() || name.size() > 255) continue;
    wire.push_back(static_cast<char>(name.size()));
    wire += name;
  }
  return wire;
}

// Server: the first of our protocols the client offers; none in common, or
// a client that offers none: the handshake goes on without ALPN.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* out_length,
               const unsigned char* offered, unsigned int offered_length,
               void* arg) {
  const std::string& ours = *static_cast<const std::string*>(arg);
  unsigned char* selected = nullptr;
  unsigned char selected_length = 0;
  if (SSL_select_next_proto(&selected, &selected_length,
                            reinterpret_cast<const unsigned char*>(ours.data()),
                            static_cast<unsigned int>(ours.size()), offered,
                            offered_length) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  *out_length = selected_length;
  return SSL_TLSEXT_ERR_OK;
}

std::string Subject(X509* certificate) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return "";
  X509_NAME_print_ex(bio, X509_get_subject_name(certificate), 0,
                     XN_FLAG_RFC2253);
  BIO_puts(bio, ", until ");
  ASN1_TIME_print(bio, X509_get0_notAfter(certificate));
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  std::string text(data, static_cast<size_t>(size > 0 ? size : 0));
  BIO_free(bio);
  return text;
}

struct Built {
  std::shared_ptr<ssl::context> context;
  std::string description;
};

// The settings alone: a certificate with its key, what the role needs,
// every named file readable.
absl::Status CheckSettings(const TlsOptions& o) {
  const bool server = o.role == TlsRole::kServer;
  if (o.cert_file.empty() != o.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        o.cert_file.empty() ? o.key_setting : o.cert_setting, " is set but ",
        o.cert_file.empty() ? o.cert_setting : o.key_setting,
        " is not: a certificate and its key go together"));
  }
  if (server && o.cert_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS needs ", o.cert_setting, " and ", o.key_setting));
  }
  if (!server && o.ca_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS to the server needs ", o.ca_setting,
                     " (the CA its certificate is checked against)"));
  }
  for (const auto& [setting, path] : {std::pair{&o.cert_setting, &o.cert_file},
                                      std::pair{&o.key_setting, &o.key_file},
                                      std::pair{&o.ca_setting, &o.ca_file}}) {
    if (path->empty()) continue;
    if (absl::Status readable = Readable(*setting, *path); !readable.ok()) {
      return readable;
    }
  }
  return absl::OkStatus();
}

// The certificate chain and its key into `context`; what it is ("<file>
// (<subject>)").
absl::StatusOr<std::string> LoadIdentity(const TlsOptions& o,
                                         ssl::context& context) {
  ErrorCode ec;
  // The key first: loading a certificate then drops a key that does not
  // match it, which the check below reports as such.
  context.use_private_key_file(o.key_file, ssl::context::pem, ec);
  if (ec) {
    return FileError(
        o.key_setting, o.key_file,
        absl::StrCat("not a PEM private key (", ec.message(), ")"));
  }
  context.use_certificate_chain_file(o.cert_file, ec);
  if (ec) {
    return FileError(
        o.cert_setting, o.cert_file,
        absl::StrCat("not a PEM certificate chain (", ec.message(), ")"));
  }
  SSL_CTX* native = context.native_handle();
  if (SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    return FileError(o.key_setting, o.key_file,
                     absl::StrCat("the key does not match the certificate of ",
                                  o.cert_setting, " ", o.cert_file));
  }
  return absl::StrCat(o.cert_file, " (",
                      Subject(SSL_CTX_get0_certificate(native)), ")");
}

// Peers checked against the CA file, if any (a server then requires a
// client certificate); else none checked.
absl::Status LoadPeerCheck(const TlsOptions& o, ssl::context& context) {
  ErrorCode ec;
  if (o.ca_file.empty()) {
    context.set_verify_mode(ssl::verify_none, ec);
    return absl::OkStatus();
  }
  context.load_verify_file(o.ca_file, ec);
  if (ec) {
    return FileError(
        o.ca_setting, o.ca_file,
        absl::StrCat("not a PEM CA certificate (", ec.message(), ")"));
  }
  context.set_verify_mode(
      o.role == TlsRole::kServer
          ? ssl::verify_peer | ssl::verify_fail_if_no_peer_cert
          : ssl::verify_peer,
      ec);
  return absl::OkStatus();
}

// ALPN: a client offers the protocols, a server picks from them.
std::shared_ptr<ssl::context> WithAlpn(const TlsOptions& o,
                                       std::shared_ptr<ssl::context> context) {
  const std::string wire = AlpnWire(o.alpn);
  if (wire.empty()) return context;
  SSL_CTX* native = context->native_handle();
  if (o.role != TlsRole::kServer) {
    SSL_CTX_set_alpn_protos(native,
                            reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned int>(wire.size()));
    return context;
  }
  // The callback's argument lives as long as the context.
  auto protocols = std::make_shared<const std::string>(wire);
  SSL_CTX_set_alpn_select_cb(
      native, SelectAlpn,
      const_cast<void*>(static_cast<const void*>(protocols.get())));
  ssl::context* raw = context.get();
  return std::shared_ptr<ssl::context>(
      raw, [context, protocols](ssl::context*) mutable { context.reset(); });
}

absl::StatusOr<Built> Build(const TlsOptions& o) {
  if (absl::Status checked = CheckSettings(o); !checked.ok()) return checked;
  auto context = std::make_shared<ssl::context>(o.role == TlsRole::kServer
                                                    ? ssl::context::tls_server
                                                    : ssl::context::tls_client);
  SSL_CTX* native = context->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  ErrorCode ec;
  context->set_options(
      ssl::context::default_workarounds | ssl::context::single_dh_use, ec);
  std::string description;
  if (!o.cert_file.empty()) {
    absl::StatusOr<std::string> identity = LoadIdentity(o, *context);
    if (!identity.ok()) return identity.status();
    description = *std::move(identity);
  }
  if (absl::Status peers = LoadPeerCheck(o, *context); !peers.ok()) {
    return peers;
  }
  if (!o.ca_file.empty()) {
    absl::StrAppend(&description, description.empty() ? "" : ", ",
                    "peers checked against ", o.ca_file);
  }
  return Built{.context = WithAlpn(o, std::move(context)),
               .description = std::move(description)};
}

}  // namespace

TlsContextSource::TlsContextSource(TlsOptions options)
    : options_(std::move(options)) {}

absl::StatusOr<std::shared_ptr<TlsContextSource>> TlsContextSource::Create(
    TlsOptions options) {
  std::shared_ptr<TlsContextSource> source(
      new TlsContextSource(std::move(options)));
  absl::MutexLock lock(&source->mu_);
  if (absl::Status built = source->RebuildLocked(); !built.ok()) return built;
  return source;
}

std::vector<TlsContextSource::FileStamp> TlsContextSource::Stamps() const {
  std::vector<FileStamp> stamps;
  for (const std::string* path :
       {&options_.cert_file, &options_.key_file, &options_.ca_file}) {
    FileStamp stamp;
    struct stat info;
    if (!path->empty() && ::stat(path->c_str(), &info) == 0) {
      stamp.mtime_ns =
          int64_t{info.st_mtim.tv_sec} * 1000000000 + info.st_mtim.tv_nsec;
      stamp.ctime_ns =
          int64_t{info.st_ctim.tv_sec} * 1000000000 + info.st_ctim.tv_nsec;
      stamp.size = info.st_size;
      stamp.inode = info.st_ino;
    }
    stamps.push_back(stamp);
  }
  return stamps;
}

absl::Status TlsContextSource::RebuildLocked() {
  // Stamped before reading: a change during the read is seen next time.
  std::vector<FileStamp> stamps = Stamps();
  absl::StatusOr<Built> built = Build(options_);
  if (!built.ok()) {
    failed_stamps_ = std::move(stamps);
    return built.status();
  }
  context_ = std::move(built->context);
  description_ = std::move(built->description);
  stamps_ = std::move(stamps);
  failed_stamps_.clear();
  next_check_ = absl::Now() + options_.check_interval;
  return absl::OkStatus();
}

std::shared_ptr<boost::asio::ssl::context> TlsContextSource::Current() {
  absl::MutexLock lock(&mu_);
  if (options_.check_interval > absl::ZeroDuration()) {
    const absl::Time now = absl::Now();
    if (now >= next_check_) {
      next_check_ = now + options_.check_interval;
      std::vector<FileStamp> stamps = Stamps();
      if (stamps != stamps_ && stamps != failed_stamps_) {
        if (absl::Status rebuilt = RebuildLocked(); rebuilt.ok()) {
          LogInfo("tls: re-read %s", description_);
        } else {
          LogWarning(
              "tls: the files changed but cannot be used (%s); "
              "keeping %s",
              rebuilt.message(), description_);
        }
      }
    }
  }
  return context_;
}

absl::StatusOr<std::string> TlsContextSource::Reload() {
  absl::MutexLock lock(&mu_);
  if (absl::Status rebuilt = RebuildLocked(); !rebuilt.ok()) {
    return absl::Status(
        rebuilt.code(),
        absl::StrCat(rebuilt.message(), "; keeping ", description_));
  }
  return description_;
}

std::string TlsContextSource::Describe() {
  absl::MutexLock lock(&mu_);
  return description_;
}

absl::StatusOr<std::string> CheckTlsFiles(const TlsOptions& options) {
  absl::StatusOr<Built> built = Build(options);
  if (!built.ok()) return built.status();
  return std::move(built->description);
}

unsigned int TlsWatchSeconds(absl::Duration interval) {
  return static_cast<unsigned int>(std::clamp<int64_t>(
      absl::ToInt64Seconds(absl::Ceil(interval, absl::Seconds(1))), 1, 86400));
}

bool PrepareTlsClient(SSL* ssl, absl::string_view name) {
  const std::string host(name);
  ErrorCode ec;
  boost::asio::ip::make_address(host, ec);
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (!ec) {
    // An address: matched against the certificate's IP entries; no SNI
    // (RFC 6066 allows only host names there).
    return X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) == 1;
  }
  return SSL_set1_host(ssl, host.c_str()) == 1 &&
         SSL_set_tlsext_host_name(ssl, host.c_str()) == 1;
}

absl::Status CheckAlpn(const SSL* ssl, absl::string_view protocol) {
  const unsigned char* selected = nullptr;
  unsigned int length = 0;
  SSL_get0_alpn_selected(ssl, &selected, &length);
  const absl::string_view got(reinterpret_cast<const char*>(selected), length);
  if (got == protocol) return absl::OkStatus();
  return absl::FailedPreconditionError(
      got.empty() ? absl::StrCat("the server selected no ALPN protocol (",
                                 protocol, " required)")
                  : absl::StrCat("the server selected ALPN \"", got, "\", not ",
                                 protocol));
}

}  // namespace coach
