// The JSON reader and writer of json.h.
#include "needle/json.h"

#include <cstdint>
#include <cstring>

#include "needle/error.h"

namespace needle {

namespace {

class JsonParser {
 public:
  JsonParser(const std::string& context, const char* data, size_t size)
      : context_(context), p_(data), begin_(data), end_(data + size) {}

  Json parse_document() {
    Json v = parse_value(0);
    skip_ws();
    if (p_ != end_) error("unexpected text after the JSON object");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) {
    fail<ValueError>(context_, ": ", what, " at byte ", p_ - begin_);
  }
  void skip_ws() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  bool consume(char c) {
    skip_ws();
    if (p_ != end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!consume(c)) error(std::string("expected '") + c + "'");
  }
  bool literal(const char* word) {
    const size_t n = std::strlen(word);
    if (size_t(end_ - p_) >= n && std::memcmp(p_, word, n) == 0) {
      p_ += n;
      return true;
    }
    return false;
  }

  Json parse_value(int depth) {
    if (depth > kMaxJsonDepth) error("nesting too deep");
    skip_ws();
    if (p_ == end_) error("unexpected end of header");
    Json v;
    const char c = *p_;
    if (c == '{') {
      ++p_;
      v.kind = Json::kObject;
      if (consume('}')) return v;
      do {
        skip_ws();
        if (p_ == end_ || *p_ != '"') error("expected a string key");
        std::string key = parse_string();
        expect(':');
        v.members.emplace_back(std::move(key), parse_value(depth + 1));
      } while (consume(','));
      expect('}');
    } else if (c == '[') {
      ++p_;
      v.kind = Json::kArray;
      if (consume(']')) return v;
      do {
        v.items.push_back(parse_value(depth + 1));
      } while (consume(','));
      expect(']');
    } else if (c == '"') {
      v.kind = Json::kString;
      v.text = parse_string();
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = Json::kNumber;
      v.text = parse_number();
    } else if (literal("true") || literal("false")) {
      v.kind = Json::kBool;
    } else if (literal("null")) {
      v.kind = Json::kNull;
    } else {
      error("unexpected character");
    }
    return v;
  }

  std::string parse_number() {
    const char* start = p_;
    auto digits = [&] {
      const char* d = p_;
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
      if (p_ == d) error("malformed number");
    };
    if (*p_ == '-') ++p_;
    digits();
    if (p_ != end_ && *p_ == '.') {
      ++p_;
      digits();
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      digits();
    }
    return std::string(start, p_);
  }

  unsigned hex4() {
    if (end_ - p_ < 4) error("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i, ++p_) {
      const char h = *p_;
      v <<= 4;
      if (h >= '0' && h <= '9')
        v |= unsigned(h - '0');
      else if (h >= 'a' && h <= 'f')
        v |= unsigned(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        v |= unsigned(h - 'A' + 10);
      else
        error("bad \\u escape");
    }
    return v;
  }

  static void append_utf8(std::string& s, unsigned cp) {
    if (cp < 0x80) {
      s += char(cp);
    } else if (cp < 0x800) {
      s += char(0xC0 | (cp >> 6));
      s += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += char(0xE0 | (cp >> 12));
      s += char(0x80 | ((cp >> 6) & 0x3F));
      s += char(0x80 | (cp & 0x3F));
    } else {
      s += char(0xF0 | (cp >> 18));
      s += char(0x80 | ((cp >> 12) & 0x3F));
      s += char(0x80 | ((cp >> 6) & 0x3F));
      s += char(0x80 | (cp & 0x3F));
    }
  }

  std::string parse_string() {
    ++p_;  // opening quote
    std::string s;
    while (true) {
      if (p_ == end_) error("unterminated string");
      const char c = *p_++;
      if (c == '"') return s;
      if (static_cast<unsigned char>(c) < 0x20) error("control character in string");
      if (c != '\\') {
        s += c;
        continue;
      }
      if (p_ == end_) error("unterminated string");
      const char e = *p_++;
      switch (e) {
        case '"':
          s += '"';
          break;
        case '\\':
          s += '\\';
          break;
        case '/':
          s += '/';
          break;
        case 'b':
          s += '\b';
          break;
        case 'f':
          s += '\f';
          break;
        case 'n':
          s += '\n';
          break;
        case 'r':
          s += '\r';
          break;
        case 't':
          s += '\t';
          break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // a surrogate pair
            if (!(literal("\\u"))) error("unpaired surrogate in \\u escape");
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) error("unpaired surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            error("unpaired surrogate in \\u escape");
          }
          append_utf8(s, cp);
          break;
        }
        default:
          error("bad escape in string");
      }
    }
  }

  const std::string& context_;
  const char* p_;
  const char* begin_;
  const char* end_;
};

}  // namespace

Json parse_json(const std::string& context, const char* data, size_t size) {
  return JsonParser(context, data, size).parse_document();
}

void write_json_string(std::ostringstream& os, const std::string& s) {
  os << '"';
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      os << '\\' << c;
    } else if (u < 0x20) {
      static const char* hex = "0123456789abcdef";
      os << "\\u00" << hex[u >> 4] << hex[u & 15];
    } else {
      os << c;
    }
  }
  os << '"';
}

}  // namespace needle
