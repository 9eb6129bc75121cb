#include "codegen/imports.h"

#include <capnp/serialize.h>
#include <kj/debug.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace harrow::codegen {
namespace {

std::string readFile(const std::string& path) {
  std::string text;
  FILE* file = fopen(path.c_str(), "r");
  if (file == nullptr) return text;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof(buffer), file)) > 0;) text.append(buffer, n);
  fclose(file);
  return text;
}

bool isFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The parent's argv: capnp runs its plugins as direct children.
std::vector<std::string> parentArgs() {
  std::vector<std::string> args;
  std::string raw = readFile("/proc/" + std::to_string(getppid()) + "/cmdline");
  for (size_t start = 0; start < raw.size();) {
    size_t end = raw.find('\0', start);
    if (end == std::string::npos) end = raw.size();
    args.push_back(raw.substr(start, end - start));
    start = end + 1;
  }
  return args;
}

// Where /proc/<parent>/<link> points, or "".
std::string parentLink(const char* link) {
  char target[4096];
  ssize_t n = readlink(("/proc/" + std::to_string(getppid()) + "/" + link).c_str(), target,
                       sizeof(target) - 1);
  return n > 0 ? std::string(target, n) : "";
}

}  // namespace

ImportLoader::ImportLoader() {
  capnp = parentLink("exe");
  if (capnp.empty()) capnp = "/usr/bin/capnp";
  // capnp runs its plugins inside the output directory: the paths it was given are relative to
  // its own.
  cwd = parentLink("cwd");
  bool standard = true;
  auto args = parentArgs();
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    std::string dir;
    if (arg == "-I" || arg == "--import-path") {
      if (i + 1 < args.size()) dir = args[++i];
    } else if (arg.rfind("--import-path=", 0) == 0) {
      dir = arg.substr(strlen("--import-path="));
    } else if (arg.rfind("-I", 0) == 0) {
      dir = arg.substr(2);
    } else if (arg == "--no-standard-import") {
      standard = false;
      importFlags.push_back(arg);
    }
    if (!dir.empty()) {
      importDirs.push_back(dir);
      importFlags.push_back("-I" + dir);
    }
  }
  if (standard) {
    importDirs.push_back("/usr/local/include");
    importDirs.push_back("/usr/include");
  }
}

std::string ImportLoader::locate(const std::string& importer, const std::string& name) const {
  auto found = [&](const std::string& path) {
    return isFile(path[0] == '/' || cwd.empty() ? path : cwd + "/" + path);
  };
  if (name.empty()) return "";
  if (name[0] == '/') {
    for (auto& dir : importDirs) {
      if (found(dir + name)) return dir + name;
    }
    return "";
  }
  size_t slash = importer.rfind('/');
  std::string path = slash == std::string::npos ? name : importer.substr(0, slash + 1) + name;
  return found(path) ? path : "";
}

void ImportLoader::loadMissing(SchemaIndex& index,
                               CodeGeneratorRequest::RequestedFile::Reader file) {
  for (auto import : file.getImports()) {
    if (index.has(import.getId())) continue;
    std::string path = locate(file.getFilename(), import.getName());
    if (path.empty()) continue;

    std::vector<std::string> args = {capnp, "compile"};
    args.insert(args.end(), importFlags.begin(), importFlags.end());
    args.push_back("-o-");
    args.push_back(path);
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);

    int fds[2];
    KJ_SYSCALL(pipe2(fds, O_CLOEXEC));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
    pid_t pid;
    // Its PWD is the directory it runs in (kj warns when they differ).
    std::string pwd = "PWD=" + cwd;
    std::vector<char*> env;
    for (char** e = environ; *e != nullptr; ++e) {
      if (strncmp(*e, "PWD=", 4) != 0 || cwd.empty()) env.push_back(*e);
    }
    if (!cwd.empty()) env.push_back(pwd.data());
    env.push_back(nullptr);
    int failed = posix_spawn(&pid, capnp.c_str(), &actions, nullptr, argv.data(), env.data());
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (failed != 0) {
      close(fds[0]);
      continue;
    }
    std::string bytes;
    char buffer[65536];
    for (;;) {
      ssize_t got = read(fds[0], buffer, sizeof(buffer));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;
      bytes.append(buffer, got);
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) continue;

    auto words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
    memcpy(words.begin(), bytes.data(), words.size() * sizeof(capnp::word));
    capnp::ReaderOptions options;
    options.traversalLimitInWords = uint64_t(1) << 40;  // as main.c++: we trust capnp
    auto reader = kj::heap<capnp::FlatArrayMessageReader>(words, options);
    index.add(reader->getRoot<CodeGeneratorRequest>());
    loaded.push_back(kj::mv(reader).attach(kj::mv(words)));
  }
}

}  // namespace harrow::codegen
