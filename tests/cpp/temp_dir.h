// TempDir: a fresh directory under the system temp dir for tests that write files,
// removed (with everything in it) at scope exit.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <iterator>
#include <string>

namespace needle::testing {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("needle_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string operator/(const std::string& name) const { return (path / name).string(); }
  size_t count_files() const {
    namespace fs = std::filesystem;
    return size_t(std::distance(fs::directory_iterator(path), fs::directory_iterator()));
  }
};

}  // namespace needle::testing
