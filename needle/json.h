// A small JSON reader and writer, for the safetensors header (serialize.cc): the reader
// builds a tree of at most kMaxJsonDepth levels and accepts only well-formed JSON.
#pragma once

#include <cstddef>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace needle {

constexpr int kMaxJsonDepth = 64;

struct Json {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  std::string text;  // string value, or the number's literal text
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;  // in file order
};

// Parses one JSON document; ValueError "<context>: <what> at byte N" when it is not one.
Json parse_json(const std::string& context, const char* data, size_t size);

// Appends `s` as a JSON string literal (quoted, escaped).
void write_json_string(std::ostringstream& os, const std::string& s);

}  // namespace needle
