#include "base/settings.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "base/log.h"

namespace coach {
namespace {

const Setting* Find(const std::vector<Setting>& settings,
                    absl::string_view flag) {
  for (const Setting& setting : settings) {
    if (setting.flag() == flag ||
        (!setting.former_flag().empty() && setting.former_flag() == flag)) {
      return &setting;
    }
  }
  return nullptr;
}

// Sets `setting` from `text` read from `where` ("--name", "environment
// variable NAME"); the error quotes `text` unless the setting is a secret.
absl::Status Apply(const Setting& setting, absl::string_view text,
                   absl::string_view where) {
  std::string error;
  if (setting.Parse(text, &error)) return absl::OkStatus();
  std::string message = absl::StrCat(where, ": expected ", setting.expected());
  if (!setting.secret()) absl::StrAppend(&message, ", got \"", text, "\"");
  if (!error.empty() && !setting.secret())
    absl::StrAppend(&message, " (", error, ")");
  return absl::InvalidArgumentError(message);
}

struct FlagValue {
  const Setting* setting;
  std::string text;
};

// A table cell: Markdown's `|` escaped, a value in backquotes.
std::string Cell(absl::string_view text) {
  return absl::StrReplaceAll(text, {{"|", "\\|"}});
}
std::string Code(absl::string_view text) {
  return text.empty() ? "(empty)" : absl::StrCat("`", Cell(text), "`");
}

}  // namespace

absl::StatusOr<Invocation> ReadSettings(const std::vector<Setting>& settings,
                                        int argc, char* const* argv) {
  // The command line first: --help and --version read nothing else, and an
  // unknown flag is reported before any value.
  std::vector<FlagValue> flags;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-help" || arg == "-h") {
      return Invocation::kHelp;
    }
    if (arg == "--helpfull" || arg == "-helpfull") return Invocation::kHelpFull;
    if (arg == "--version" || arg == "-version") return Invocation::kVersion;
    // Like absl: --name or -name, then =value or the next argument.
    if (!absl::ConsumePrefix(&arg, "--") && !absl::ConsumePrefix(&arg, "-")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument \"", arg,
                       "\": settings are --name=value (see --help)"));
    }
    const size_t equals = arg.find('=');
    const absl::string_view name = arg.substr(0, equals);
    const Setting* setting = Find(settings, name);
    if (setting == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    if (equals != absl::string_view::npos) {
      flags.push_back({setting, std::string(arg.substr(equals + 1))});
    } else if (setting->is_bool()) {
      flags.push_back({setting, "true"});
    } else if (i + 1 < argc) {
      flags.push_back({setting, argv[++i]});
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, ": missing value"));
    }
  }
  // flag > environment > default: the environment, then the flags.
  for (const Setting& setting : settings) {
    const char* value = std::getenv(std::string(setting.env()).c_str());
    if (value == nullptr) continue;
    absl::Status applied = Apply(
        setting, value, absl::StrCat("environment variable ", setting.env()));
    if (!applied.ok()) return applied;
  }
  for (const FlagValue& flag : flags) {
    absl::Status applied = Apply(*flag.setting, flag.text,
                                 absl::StrCat("--", flag.setting->flag()));
    if (!applied.ok()) return applied;
  }
  for (const Setting& setting : settings) {
    if (std::string wrong = setting.Check(); !wrong.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", setting.flag(), " (", setting.env(), ") ", wrong));
    }
  }
  return Invocation::kRun;
}

std::string SettingsHelp(absl::string_view program,
                         absl::string_view description,
                         const std::vector<Setting>& settings, bool full) {
  std::string help = absl::StrCat(
      "Usage: ", program, " [--name=value ...]\n", description,
      "\n\nEvery setting is a flag and an environment variable: the flag wins "
      "over the variable, the variable over the default.",
      full ? "" : " The settings most deployments set; --helpfull lists all.",
      "\n\n"
      "| Variable | Flag | Default | Meaning |\n"
      "|---|---|---|---|\n");
  std::vector<const Setting*> renamed;
  for (const Setting& setting : settings) {
    if (!full && !setting.essential()) continue;
    absl::StrAppend(&help, "| `", setting.env(), "` | `--", setting.flag(),
                    "` | ",
                    setting.secret() ? "(secret)" : Code(setting.Unparse()),
                    " | ", Cell(setting.help()), " |\n");
    if (!setting.former_flag().empty()) renamed.push_back(&setting);
  }
  if (full && !renamed.empty()) {
    absl::StrAppend(&help, "\nFormer flag names, still accepted: ");
    for (size_t i = 0; i < renamed.size(); ++i) {
      absl::StrAppend(&help, i == 0 ? "" : ", ", "--",
                      renamed[i]->former_flag(), " (--", renamed[i]->flag(),
                      ")");
    }
    absl::StrAppend(&help, ".\n");
  }
  absl::StrAppend(&help,
                  "\n--help prints the essential settings, --helpfull all of "
                  "them, --version the version and build type.\n");
  return help;
}

std::string VersionText(absl::string_view program) {
  return absl::StrCat(program, " ", COACH_VERSION, " (", COACH_BUILD_TYPE,
                      ")\n");
}

std::optional<int> ExitBeforeRunning(const absl::Status& status,
                                     const std::string& print_and_exit) {
  if (!status.ok()) {
    LogError("configuration: %s", status.ToString());
    return EXIT_FAILURE;
  }
  if (print_and_exit.empty()) return std::nullopt;
  std::fputs(print_and_exit.c_str(), stdout);
  return EXIT_SUCCESS;
}

}  // namespace coach
