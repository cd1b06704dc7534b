// Starting a real binary as a child process, for the tests that run
// coach-server and coach-proxy as processes (server_process_test, tls_test).
#ifndef COACH_TESTS_SUPPORT_SPAWN_H_
#define COACH_TESTS_SUPPORT_SPAWN_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

namespace coach::testing {

// Starts `argv` (argv[0] the binary's path) with exactly `env` as its
// environment, stdin from /dev/null, stdout and stderr appended to
// `log_path`, in `cwd` (empty: this process's). SIGTERM, SIGINT and SIGHUP
// start at their defaults and unblocked, whatever the test runner did with
// them (nohup ignores SIGHUP, and an ignored signal would stay ignored in
// the child). The child's pid, or -1 if it could not start. The caller
// kills and reaps it.
inline pid_t SpawnChild(std::vector<std::string> argv,
                        const std::map<std::string, std::string>& env,
                        const std::string& log_path,
                        const std::string& cwd = "") {
  std::vector<std::string> env_strings;
  for (const auto& [name, value] : env)
    env_strings.push_back(name + "=" + value);
  // As execve wants them: pointers into the strings, then null.
  const auto pointers = [](std::vector<std::string>& strings) {
    std::vector<char*> out;
    for (std::string& s : strings) out.push_back(s.data());
    out.push_back(nullptr);
    return out;
  };
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &stop_signals);
  posix_spawnattr_setflags(&attributes,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> argv_pointers = pointers(argv);
  std::vector<char*> envp = pointers(env_strings);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv_pointers[0], &actions, &attributes,
                  argv_pointers.data(), envp.data()) != 0) {
    pid = -1;
  }
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_SPAWN_H_
