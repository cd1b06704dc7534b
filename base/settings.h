// Settings: each binary declares its settings once, as a table, and the
// table gives everything else: the flags (`--name=value` or `--name value`),
// the environment variables, the checks, `--help` and `--version`.
//
// An entry names a field of the configuration being filled (a typed
// pointer), its flag and variable, a check and a help text. Its default is
// whatever the default-constructed configuration holds: the defaults live in
// the config structs only. Values are parsed and printed by absl's flag
// marshalling (int, int64, size_t, double, bool, std::string,
// std::vector<std::string> as "a,b", absl::Duration as "10s"), so that the
// syntax is absl's, and no parser is written here.
//
// Precedence: flag > environment > default. Errors name the flag or the
// variable, and never echo a secret's value.
//
//   std::vector<Setting> Table(Config& c) {
//     return {
//         {"db_path", "COACH_DB_PATH", &c.db_path, kNonEmpty, "SQLite file"},
//         Secret({"admin_token", "COACH_ADMIN_TOKEN", &c.admin_token,
//                 kAnyValue, "Bearer token of the admin RPCs"}),
//     };
//   }
//   absl::StatusOr<Startup<Config>> s = LoadSettings<Config>(
//       "coach-server", "What it is.", argc, argv, Table, CrossCheck);
//   if (std::optional<int> exit = ExitBeforeRunning(s)) return *exit;
//
// Thread-safety: none needed: a binary loads its settings once, in main,
// before starting any thread. Reads the environment (std::getenv).
#ifndef COACH_BASE_SETTINGS_H_
#define COACH_BASE_SETTINGS_H_

#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/flags/marshalling.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace coach {

// Checks, one per entry. Each returns "" for a good value, else what is
// wrong ("must be positive"), which never quotes the value.
struct AnyValue {
  template <typename T>
  std::string operator()(const T&) const {
    return "";
  }
};
struct Positive {  // > 0 (zero of the type: 0, 0.0, absl::ZeroDuration())
  template <typename T>
  std::string operator()(const T& v) const {
    return v > T{} ? "" : "must be positive";
  }
};
struct NonNegative {
  template <typename T>
  std::string operator()(const T& v) const {
    return v < T{} ? "must not be negative" : "";
  }
};
struct NonEmpty {  // a string or a list
  template <typename T>
  std::string operator()(const T& v) const {
    return v.empty() ? "must not be empty" : "";
  }
};
struct InRange {  // [low, high], for numbers
  double low;
  double high;
  template <typename T>
  std::string operator()(const T& v) const {
    return v >= low && v <= high
               ? ""
               : absl::StrCat("must be between ", low, " and ", high);
  }
};
struct OneOf {  // a string among a few
  std::vector<std::string> values;
  std::string operator()(const std::string& v) const {
    for (const std::string& value : values) {
      if (v == value) return "";
    }
    return absl::StrCat("must be one of: ", absl::StrJoin(values, ", "));
  }
};
inline constexpr AnyValue kAnyValue;
inline constexpr Positive kPositive;
inline constexpr NonNegative kNonNegative;
inline constexpr NonEmpty kNonEmpty;

// An enum setting: the names its values are written as. A config's enum
// type E gets absl's flag marshalling from two functions in E's namespace,
//   bool AbslParseFlag(absl::string_view, E*, std::string*);
//   std::string AbslUnparseFlag(E);
// written with these helpers over one table of names:
//   constexpr EnumName<AuthMode> kAuthModes[] = {{AuthMode::kNone, "none"},
//                                                {AuthMode::kJwt, "jwt"}};
template <typename E>
struct EnumName {
  E value;
  const char* name;
};
template <typename E, size_t N>
bool ParseEnumName(absl::string_view text, const EnumName<E> (&names)[N],
                   E* out, std::string* error) {
  std::vector<absl::string_view> known;
  for (const EnumName<E>& name : names) {
    if (text == name.name) {
      *out = name.value;
      return true;
    }
    known.push_back(name.name);
  }
  *error = absl::StrCat("one of: ", absl::StrJoin(known, ", "));
  return false;
}
template <typename E, size_t N>
std::string EnumNameOf(E value, const EnumName<E> (&names)[N]) {
  for (const EnumName<E>& name : names) {
    if (name.value == value) return name.name;
  }
  return "";
}

// One row of a binary's table, bound to one field of the config being filled.
class Setting {
 public:
  template <typename T, typename Check>
  Setting(absl::string_view flag, absl::string_view env, T* field, Check check,
          absl::string_view help)
      : flag_(flag),
        env_(env),
        help_(help),
        is_bool_(std::is_same_v<T, bool>),
        expected_(Expected<T>()),
        parse_([field](absl::string_view text, std::string* error) {
          return absl::ParseFlag<T>(text, field, error);
        }),
        unparse_([field] { return absl::UnparseFlag<T>(*field); }),
        check_([field, check] { return check(*field); }) {}

  absl::string_view flag() const { return flag_; }
  absl::string_view env() const { return env_; }
  absl::string_view help() const { return help_; }
  bool secret() const { return secret_; }
  bool is_bool() const { return is_bool_; }
  // What a value should look like ("an integer"), for error messages.
  absl::string_view expected() const { return expected_; }

  // Sets the field from `text`; false (and `error` perhaps set) if it does
  // not parse, the field then unchanged.
  bool Parse(absl::string_view text, std::string* error) const {
    return parse_(text, error);
  }
  // The field's value as a flag would write it ("10s", "a,b", "0.7").
  std::string Unparse() const { return unparse_(); }
  // "" if the field's value passes the check, else what is wrong.
  std::string Check() const { return check_(); }

  // The flag's former name, still accepted ("" if none).
  absl::string_view former_flag() const { return former_flag_; }
  bool essential() const { return essential_; }

  friend Setting Secret(Setting setting) {
    setting.secret_ = true;
    return setting;
  }
  friend Setting Essential(Setting setting) {
    setting.essential_ = true;
    return setting;
  }
  friend Setting Renamed(Setting setting, absl::string_view former_flag) {
    setting.former_flag_ = former_flag;
    return setting;
  }

 private:
  template <typename T>
  static absl::string_view Expected() {
    if constexpr (std::is_same_v<T, bool>)
      return "true or false";
    else if constexpr (std::is_same_v<T, absl::Duration>)
      return "a duration such as 500ms, 10s or 5m";
    else if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>)
      return "a non-negative integer";
    else if constexpr (std::is_integral_v<T>)
      return "an integer";
    else if constexpr (std::is_floating_point_v<T>)
      return "a number";
    else
      return "a valid value";
  }

  absl::string_view flag_;
  absl::string_view env_;
  absl::string_view help_;
  absl::string_view former_flag_;
  bool secret_ = false;
  bool essential_ = false;
  bool is_bool_;
  absl::string_view expected_;
  std::function<bool(absl::string_view, std::string*)> parse_;
  std::function<std::string()> unparse_;
  std::function<std::string()> check_;
};

// A secret (a key, a token): its value and default are never printed, in
// errors or in --help. (Declared in the class as a friend.)
Setting Secret(Setting setting);
// A setting most operators set or must know: listed by --help (the others
// by --helpfull only, Abseil's convention).
Setting Essential(Setting setting);
// A flag renamed to match its variable: `former_flag` is still accepted (for
// one release), and --helpfull says so.
Setting Renamed(Setting setting, absl::string_view former_flag);

// What the command line asks for.
enum class Invocation { kRun, kHelp, kHelpFull, kVersion };

// Reads the command line, then (unless it asks for --help or --version) the
// environment variables that are set, then the flags, into the fields of
// `settings`, and checks each field. INVALID_ARGUMENT naming the flag or the
// variable on an unknown flag, a value that does not parse or fails its
// check. Empty variables count as set (COACH_CORS_ORIGINS= means none).
absl::StatusOr<Invocation> ReadSettings(const std::vector<Setting>& settings,
                                        int argc, char* const* argv);

// --help (`full` false): usage, then a Markdown table of the essential
// settings (variable, flag, current value of the field as its default,
// help), docs/settings.md's essential tables. --helpfull (`full`): every
// setting, and the former flag names still accepted; docs/settings.md's
// full tables.
std::string SettingsHelp(absl::string_view program,
                         absl::string_view description,
                         const std::vector<Setting>& settings, bool full);

// --version: "coach-server 0.1.0 (RelWithDebInfo)\n": the project's version
// and build type, from CMake.
std::string VersionText(absl::string_view program);

// A binary's start: run with `config`, or, when `print_and_exit` is not
// empty (--help, --version), print it on stdout and exit 0.
template <typename Config>
struct Startup {
  Config config;
  std::string print_and_exit;
};

// The whole of a binary's loading: `table` bound to a default-constructed
// Config, read (ReadSettings), then `cross_check`, if any, for the rules
// that involve two settings or more.
template <typename Config>
absl::StatusOr<Startup<Config>> LoadSettings(
    absl::string_view program, absl::string_view description, int argc,
    char* const* argv, std::vector<Setting> (*table)(Config&),
    absl::Status (*cross_check)(const Config&) = nullptr) {
  Startup<Config> startup;
  const std::vector<Setting> settings = table(startup.config);
  absl::StatusOr<Invocation> invocation = ReadSettings(settings, argc, argv);
  if (!invocation.ok()) return invocation.status();
  switch (*invocation) {
    case Invocation::kHelp:  // Nothing was read: the fields hold defaults.
    case Invocation::kHelpFull:
      startup.print_and_exit = SettingsHelp(
          program, description, settings, *invocation == Invocation::kHelpFull);
      return startup;
    case Invocation::kVersion:
      startup.print_and_exit = VersionText(program);
      return startup;
    case Invocation::kRun: break;
  }
  if (cross_check != nullptr) {
    if (absl::Status valid = cross_check(startup.config); !valid.ok()) {
      return valid;
    }
  }
  return startup;
}

// For main, after LoadSettings: nullopt to go on and run with the config;
// else the code to exit with, having logged the error (1) or printed
// --help's or --version's text on stdout (0).
std::optional<int> ExitBeforeRunning(const absl::Status& status,
                                     const std::string& print_and_exit);
template <typename Config>
std::optional<int> ExitBeforeRunning(
    const absl::StatusOr<Startup<Config>>& startup) {
  return ExitBeforeRunning(startup.status(),
                           startup.ok() ? startup->print_and_exit : "");
}

}  // namespace coach

#endif  // COACH_BASE_SETTINGS_H_
