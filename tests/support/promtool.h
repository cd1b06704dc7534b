// Prometheus's own checker on an exposition: `promtool check metrics`
// (Debian's package prometheus; tools/setup.sh installs it). It exits
// non-zero on a format error or a lint problem (a counter without _total,
// a bad HELP...). Suites that use it get COACH_PROMTOOL, the program's path,
// from tests/CMakeLists.txt when it is installed.
#ifndef COACH_TESTS_SUPPORT_PROMTOOL_H_
#define COACH_TESTS_SUPPORT_PROMTOOL_H_

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/support/temp_dir.h"

namespace coach::testing {

struct PromtoolVerdict {
  int exit_code = -1;
  std::string output;
};

inline PromtoolVerdict CheckWithPromtool(const std::string& promtool,
                                         const std::string& exposition) {
  TempDir dir;
  const std::string path = dir.File("metrics.txt");
  std::ofstream(path) << exposition;
  const std::string command =
      absl::StrCat(promtool, " check metrics < ", path, " 2>&1");
  PromtoolVerdict verdict;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return verdict;
  char buffer[512];
  while (fgets(buffer, sizeof(buffer), pipe) != nullptr)
    verdict.output += buffer;
  const int status = pclose(pipe);
  if (WIFEXITED(status)) verdict.exit_code = WEXITSTATUS(status);
  return verdict;
}

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_PROMTOOL_H_
