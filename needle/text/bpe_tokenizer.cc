// The BPE tokenizer outside training (which is bpe_train.cc): the pre-split into pieces, the
// lookup tables built from the merges, encode (merges applied by rank inside each piece,
// with a cache of encoded pieces), decode, and the text file format of save / load
// (docs/tokenizer.md), written atomically and read with errors that name the file and line.
#include "needle/text/bpe_tokenizer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "needle/error.h"

namespace needle::text {
namespace {

enum ByteClass : uint8_t { kLetter, kDigit, kSpace, kOther };

constexpr std::array<uint8_t, 256> make_classes() {
  std::array<uint8_t, 256> c{};
  for (int b = 0; b < 256; ++b) {
    if ((b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || b >= 0x80)
      c[b] = kLetter;
    else if (b >= '0' && b <= '9')
      c[b] = kDigit;
    else if (b == ' ' || b == '\t' || b == '\n' || b == '\v' || b == '\f' || b == '\r')
      c[b] = kSpace;
    else
      c[b] = kOther;
  }
  return c;
}
constexpr std::array<uint8_t, 256> kClass = make_classes();

inline uint8_t class_of(char c) {
  return kClass[static_cast<unsigned char>(c)];
}

inline uint64_t pair_key(int32_t left, int32_t right) {
  return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
}

// Pieces up to this many bytes are cached by encode; the cache is emptied when it holds more
// than kCacheTokens tokens, so memory stays bounded on any input.
constexpr size_t kCachePieceBytes = 64;
constexpr size_t kCacheTokens = size_t(1) << 22;

}  // namespace

// --- Pre-split ---

bool PieceSplitter::next(std::string_view* piece) {
  const size_t n = text_.size(), p = pos_;
  if (p >= n) return false;
  const char* s = text_.data();
  size_t end = p + 1;
  if (s[p] == '\'' && p + 1 < n) {  // 's 't 're 've 'm 'll 'd
    const char a = s[p + 1], b = p + 2 < n ? s[p + 2] : '\0';
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
      end = p + 2;
    else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
      end = p + 3;
  }
  if (end == p + 1) {
    size_t q = p;
    if (s[p] == ' ' && p + 1 < n && class_of(s[p + 1]) != kSpace) q = p + 1;
    const uint8_t c = class_of(s[q]);
    end = q + 1;
    while (end < n && class_of(s[end]) == c) ++end;
    // A whitespace run followed by a non-space byte leaves its last byte to what follows.
    if (c == kSpace && end < n && end - p >= 2) --end;
  }
  *piece = text_.substr(p, end - p);
  pos_ = end;
  return true;
}

std::vector<std::string_view> pre_split(std::string_view text) {
  std::vector<std::string_view> pieces;
  PieceSplitter splitter(text);
  std::string_view piece;
  while (splitter.next(&piece)) pieces.push_back(piece);
  return pieces;
}

// --- Tables ---

struct BPETokenizer::Tables {
  std::unordered_map<uint64_t, int32_t> rank;  // (left, right) -> index of the merge
  std::vector<std::string> bytes;              // id -> the bytes it stands for, every id
  // Special tokens, longest first (so the longest match at a position wins), with their ids,
  // and which bytes start one.
  std::vector<std::pair<std::string, int64_t>> specials;
  std::array<bool, 256> starts_special{};

  // Encoded pieces: piece -> (offset, count) into `tokens`. Guarded by `mutex`.
  mutable std::mutex mutex;
  mutable std::unordered_map<std::string, std::pair<uint32_t, uint32_t>> cache;
  mutable std::vector<int32_t> tokens;
};

const BPETokenizer::Tables& BPETokenizer::tables() const {
  if (tables_) return *tables_;
  static const std::shared_ptr<const Tables> untrained = build_tables({}, {});
  return *untrained;
}

std::shared_ptr<const BPETokenizer::Tables> BPETokenizer::build_tables(
    const std::vector<Merge>& merges, const std::vector<std::string>& specials) {
  auto t = std::make_shared<Tables>();
  const int64_t n_tokens = BPETokenizer::kNumBytes + int64_t(merges.size());
  if (n_tokens + int64_t(specials.size()) > BPETokenizer::kMaxVocabSize)
    fail<ValueError>("[BPETokenizer] a vocabulary of ", n_tokens + int64_t(specials.size()),
                     " tokens is above the limit of ", BPETokenizer::kMaxVocabSize);
  t->bytes.reserve(size_t(n_tokens) + specials.size());
  for (int b = 0; b < BPETokenizer::kNumBytes; ++b) t->bytes.emplace_back(1, char(b));
  t->rank.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const Merge m = merges[i];
    const int64_t limit = BPETokenizer::kNumBytes + int64_t(i);
    for (int32_t id : {m.left, m.right})
      if (id < 0 || id >= limit)
        fail<ValueError>("[BPETokenizer] merge ", i, " uses token id ", id, ", but merge ", i,
                         " may only use ids below ", limit);
    if (!t->rank.emplace(pair_key(m.left, m.right), int32_t(i)).second)
      fail<ValueError>("[BPETokenizer] merge ", i, " (", m.left, ", ", m.right, ") repeats merge ",
                       t->rank[pair_key(m.left, m.right)]);
    t->bytes.push_back(t->bytes[size_t(m.left)] + t->bytes[size_t(m.right)]);
  }
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < specials.size(); ++i) {
    const std::string& s = specials[i];
    if (s.empty()) fail<ValueError>("[BPETokenizer] special token ", i, " is empty");
    if (!seen.insert(s).second)
      fail<ValueError>("[BPETokenizer] special token ", i, " ('", s, "') is repeated");
    t->bytes.push_back(s);
    t->specials.emplace_back(s, n_tokens + int64_t(i));
    t->starts_special[static_cast<unsigned char>(s[0])] = true;
  }
  std::stable_sort(t->specials.begin(), t->specials.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  return t;
}

BPETokenizer::BPETokenizer() = default;

BPETokenizer::BPETokenizer(std::vector<Merge> merges, std::vector<std::string> special_tokens)
    : tables_(build_tables(merges, special_tokens)) {
  merges_ = std::move(merges);
  special_tokens_ = std::move(special_tokens);
}

BPETokenizer::BPETokenizer(BPETokenizer&& other) noexcept
    : merges_(std::move(other.merges_)),
      special_tokens_(std::move(other.special_tokens_)),
      tables_(std::move(other.tables_)) {
  other.reset();
}

BPETokenizer& BPETokenizer::operator=(BPETokenizer&& other) noexcept {
  if (this != &other) {
    merges_ = std::move(other.merges_);
    special_tokens_ = std::move(other.special_tokens_);
    tables_ = std::move(other.tables_);
    other.reset();
  }
  return *this;
}

void BPETokenizer::reset() noexcept {
  merges_.clear();
  special_tokens_.clear();
  tables_.reset();
}

size_t BPETokenizer::find_special(std::string_view text, size_t from, int64_t* id,
                                  size_t* length) const {
  const Tables& t = tables();
  if (t.specials.empty()) return std::string_view::npos;
  for (size_t p = from; p < text.size(); ++p) {
    if (!t.starts_special[static_cast<unsigned char>(text[p])]) continue;
    for (const auto& [s, sid] : t.specials)
      if (text.compare(p, s.size(), s) == 0) {
        *id = sid;
        *length = s.size();
        return p;
      }
  }
  return std::string_view::npos;
}

const std::string& BPETokenizer::token_bytes(int64_t id) const {
  const Tables& t = tables();
  if (id < 0 || id >= int64_t(t.bytes.size()))
    fail<ValueError>("[BPETokenizer.token_bytes] token id ", id,
                     " is out of range for a vocabulary of ", t.bytes.size(), " tokens");
  return t.bytes[size_t(id)];
}

// --- Encode ---

namespace {

// Buffers of one encode call, reused from piece to piece.
struct Scratch {
  std::vector<int32_t> token, next, prev;
  std::vector<std::pair<int32_t, int32_t>> heap;  // (rank, position), smallest first
  std::string key;
};

// Appends the tokens of one piece: its bytes, then repeatedly the adjacent pair of the lowest
// rank merged (the leftmost among equals), as the merges were learned. The tokens form a
// linked list and candidate pairs a heap, so a piece of n bytes costs O(n log n).
void merge_piece(const std::unordered_map<uint64_t, int32_t>& rank,
                 const std::vector<Merge>& merges, std::string_view piece, Scratch& s,
                 std::vector<int32_t>* out) {
  const int32_t n = int32_t(piece.size());
  if (n == 1) {
    out->push_back(static_cast<unsigned char>(piece[0]));
    return;
  }
  s.token.resize(size_t(n));
  s.next.resize(size_t(n));
  s.prev.resize(size_t(n));
  s.heap.clear();
  const auto greater = std::greater<std::pair<int32_t, int32_t>>();
  auto push = [&](int32_t pos, int32_t right_pos) {
    const auto it = rank.find(pair_key(s.token[size_t(pos)], s.token[size_t(right_pos)]));
    if (it == rank.end()) return;
    s.heap.emplace_back(it->second, pos);
    std::push_heap(s.heap.begin(), s.heap.end(), greater);
  };
  for (int32_t i = 0; i < n; ++i) {
    s.token[size_t(i)] = static_cast<unsigned char>(piece[size_t(i)]);
    s.next[size_t(i)] = i + 1;
    s.prev[size_t(i)] = i - 1;
  }
  for (int32_t i = 0; i + 1 < n; ++i) push(i, i + 1);
  while (!s.heap.empty()) {
    std::pop_heap(s.heap.begin(), s.heap.end(), greater);
    const auto [r, i] = s.heap.back();
    s.heap.pop_back();
    const int32_t j = s.next[size_t(i)];
    // Out of date when the token at i was merged away or into something else since.
    if (s.token[size_t(i)] != merges[size_t(r)].left || j >= n ||
        s.token[size_t(j)] != merges[size_t(r)].right)
      continue;
    s.token[size_t(i)] = BPETokenizer::kNumBytes + r;
    s.token[size_t(j)] = -1;
    s.next[size_t(i)] = s.next[size_t(j)];
    if (s.next[size_t(i)] < n) s.prev[size_t(s.next[size_t(i)])] = i;
    if (s.prev[size_t(i)] >= 0) push(s.prev[size_t(i)], i);
    if (s.next[size_t(i)] < n) push(i, s.next[size_t(i)]);
  }
  for (int32_t i = 0; i < n; i = s.next[size_t(i)]) out->push_back(s.token[size_t(i)]);
}

}  // namespace

std::vector<int64_t> BPETokenizer::encode(std::string_view text) const {
  const Tables& t = tables();
  std::vector<int64_t> ids;
  ids.reserve(text.size() / 4 + 16);
  Scratch scratch;
  std::vector<int32_t> piece_tokens;
  std::lock_guard<std::mutex> lock(t.mutex);
  auto encode_segment = [&](std::string_view segment) {
    PieceSplitter splitter(segment);
    std::string_view piece;
    while (splitter.next(&piece)) {
      if (piece.size() > kCachePieceBytes) {
        piece_tokens.clear();
        merge_piece(t.rank, merges_, piece, scratch, &piece_tokens);
        ids.insert(ids.end(), piece_tokens.begin(), piece_tokens.end());
        continue;
      }
      scratch.key.assign(piece.data(), piece.size());
      auto it = t.cache.find(scratch.key);
      if (it == t.cache.end()) {
        if (t.tokens.size() > kCacheTokens) {
          t.cache.clear();
          t.tokens.clear();
        }
        const size_t offset = t.tokens.size();
        merge_piece(t.rank, merges_, piece, scratch, &t.tokens);
        it = t.cache
                 .emplace(scratch.key,
                          std::make_pair(uint32_t(offset), uint32_t(t.tokens.size() - offset)))
                 .first;
      }
      const int32_t* first = t.tokens.data() + it->second.first;
      ids.insert(ids.end(), first, first + it->second.second);
    }
  };
  size_t pos = 0;
  for (;;) {
    int64_t id = 0;
    size_t length = 0;
    const size_t at = find_special(text, pos, &id, &length);
    if (at == std::string_view::npos) break;
    encode_segment(text.substr(pos, at - pos));
    ids.push_back(id);
    pos = at + length;
  }
  encode_segment(text.substr(pos));
  return ids;
}

// --- Decode ---

std::string BPETokenizer::decode(const int64_t* ids, size_t n) const {
  const Tables& t = tables();
  const int64_t size = int64_t(t.bytes.size());
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= size)
      fail<ValueError>("[BPETokenizer.decode] token id ", ids[i], " (at position ", i,
                       ") is out of range for a vocabulary of ", size, " tokens");
    total += t.bytes[size_t(ids[i])].size();
  }
  std::string out;
  out.reserve(total);
  for (size_t i = 0; i < n; ++i) out += t.bytes[size_t(ids[i])];
  return out;
}

// --- File format ---

namespace {

constexpr const char* kMagic = "needle-bpe";
constexpr int kVersion = 1;

// Printable ASCII but '\' and ' ' as is; every other byte as \xHH, '\' as \\. (Error
// messages show file text this way too, but with spaces kept.)
std::string escape(std::string_view s, bool keep_space = false) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\\') {
      out += "\\\\";
    } else if ((c > 0x20 && c < 0x7f) || (keep_space && c == ' ')) {
      out += ch;
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string shown(std::string_view s) {
  return escape(s, true);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void write_atomically(const std::string& path, const std::string& bytes) {
  const char* op = "[BPETokenizer.save] cannot write ";
  struct stat st;
  // The target is replaced by rename: only a regular file (or none) may be replaced.
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    fail<ValueError>(op, path, ": ",
                     S_ISDIR(st.st_mode) ? "it is a directory"
                                         : "it is not a regular file (a FIFO, socket or device)");
  std::string templ = path + ".tmp-" + std::to_string(::getpid()) + "-XXXXXX";
  std::vector<char> name(templ.begin(), templ.end());
  name.push_back('\0');
  int fd = ::mkstemp(name.data());
  if (fd < 0)
    fail<RuntimeError>(op, path, ": cannot create a temporary file (", std::strerror(errno), ")");
  auto give_up = [&](const char* what) {
    const std::string reason = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    ::unlink(name.data());
    fail<RuntimeError>(op, path, ": ", what, " (", reason, ")");
  };
  ::fchmod(fd, 0644);
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) give_up("write failed");
    done += size_t(w);
  }
  if (::fsync(fd) != 0) give_up("fsync failed");
  const int closing = fd;
  fd = -1;
  if (::close(closing) != 0) give_up("close failed");
  if (::rename(name.data(), path.c_str()) != 0) give_up("rename failed");
}

[[noreturn]] void bad_file(const std::string& path, const std::string& what) {
  fail<ValueError>("[BPETokenizer.load] ", path, ": ", what);
}

// The whole of a regular file (a FIFO would block, a directory has no bytes).
std::string read_file(const std::string& path) {
  struct stat st;
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) bad_file(path, std::string("cannot open file (") + std::strerror(errno) + ")");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::fstat(fd, &st) != 0) bad_file(path, "cannot determine the file size");
  if (S_ISDIR(st.st_mode)) bad_file(path, "is a directory, not a tokenizer file");
  if (!S_ISREG(st.st_mode)) bad_file(path, "is not a regular file (a FIFO, socket or device)");
  std::string bytes;
  char buf[1 << 16];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) bad_file(path, std::string("read error (") + std::strerror(errno) + ")");
    if (r == 0) break;
    bytes.append(buf, size_t(r));
  }
  return bytes;
}

// Reads a file line by line; errors name the file and the line.
class LineReader {
 public:
  LineReader(const std::string& path, const std::string& data) : path_(path), data_(data) {}

  // The next line without its '\n'; false at the end of the file. Every line ends in '\n',
  // so a file cut inside its last line is caught rather than read short.
  bool next(std::string_view* line) {
    if (pos_ >= data_.size()) return false;
    ++number_;
    const size_t nl = data_.find('\n', pos_);
    if (nl == std::string::npos) error("truncated: the last line does not end with a newline");
    *line = std::string_view(data_).substr(pos_, nl - pos_);
    pos_ = nl + 1;
    return true;
  }
  // The next line, which must exist: `what` says what was expected there.
  std::string_view expect(const std::string& what) {
    std::string_view line;
    if (!next(&line)) {
      ++number_;
      error("truncated: the file ends where " + what + " should be");
    }
    return line;
  }
  // A decimal number, all digits, at most `max`.
  int64_t number(std::string_view text, int64_t max, const std::string& what) {
    if (text.empty() || text.size() > 12 ||
        text.find_first_not_of("0123456789") != std::string_view::npos)
      error("expected " + what + ", got '" + shown(text.substr(0, 40)) + "'");
    const int64_t v = std::stoll(std::string(text));
    if (v > max)
      error(what + " " + std::to_string(v) + " is above the limit of " + std::to_string(max));
    return v;
  }
  [[noreturn]] void error(const std::string& what) const {
    bad_file(path_ + ":" + std::to_string(number_), what);
  }
  int64_t line_number() const { return number_; }

 private:
  const std::string& path_;
  const std::string& data_;
  size_t pos_ = 0;
  int64_t number_ = 0;
};

// "<name> <count>" (header lines 2 and 3).
int64_t read_count(LineReader& in, const std::string& name, int64_t max) {
  const std::string_view line = in.expect("the line '" + name + " <count>'");
  if (line.compare(0, name.size() + 1, name + " ") != 0)
    in.error("expected '" + name + " <count>', got '" + shown(line.substr(0, 40)) + "'");
  return in.number(line.substr(name.size() + 1), max, "a count of " + name);
}

}  // namespace

void BPETokenizer::save(const std::string& path) const {
  std::string out = std::string(kMagic) + " " + std::to_string(kVersion) + "\n";
  out += "merges " + std::to_string(merges_.size()) + "\n";
  out += "special_tokens " + std::to_string(special_tokens_.size()) + "\n";
  for (const Merge& m : merges_)
    out += std::to_string(m.left) + " " + std::to_string(m.right) + "\n";
  for (const std::string& s : special_tokens_) out += escape(s) + "\n";
  write_atomically(path, out);
}

BPETokenizer BPETokenizer::load(const std::string& path) {
  const std::string data = read_file(path);
  if (data.empty()) bad_file(path, "is empty, not a tokenizer file");
  LineReader in(path, data);
  const std::string magic = std::string(kMagic) + " ";
  const std::string_view first = in.expect("the header");
  if (first.compare(0, magic.size(), magic) != 0)
    in.error("not a needle BPE tokenizer file (the first line should be '" + magic +
             std::to_string(kVersion) + "')");
  if (first.substr(magic.size()) != std::to_string(kVersion))
    in.error("unsupported format version '" + shown(first.substr(magic.size(), 20)) +
             "' (this build reads version " + std::to_string(kVersion) + ")");
  const int64_t n_merges = read_count(in, "merges", kMaxVocabSize - kNumBytes);
  const int64_t n_specials = read_count(in, "special_tokens", kMaxVocabSize - kNumBytes - n_merges);

  std::vector<Merge> merges;
  merges.reserve(size_t(std::min<int64_t>(n_merges, int64_t(data.size() / 4))));
  std::unordered_map<uint64_t, int64_t> line_of;  // merge pair -> its line
  for (int64_t i = 0; i < n_merges; ++i) {
    const std::string_view line =
        in.expect("merge " + std::to_string(i + 1) + " of " + std::to_string(n_merges));
    const size_t space = line.find(' ');
    if (space == std::string_view::npos)
      in.error("expected a merge 'LEFT RIGHT' (two token ids), got '" + shown(line.substr(0, 40)) +
               "'");
    const int64_t limit = kNumBytes + i;
    int32_t ids[2];
    for (int k = 0; k < 2; ++k) {
      const std::string_view field = k == 0 ? line.substr(0, space) : line.substr(space + 1);
      const int64_t id = in.number(field, kMaxVocabSize, "a token id");
      if (id >= limit)
        in.error("token id " + std::to_string(id) + " is out of range: merge " +
                 std::to_string(i + 1) + " may only use ids below " + std::to_string(limit));
      ids[k] = int32_t(id);
    }
    const auto [it, fresh] = line_of.emplace(pair_key(ids[0], ids[1]), in.line_number());
    if (!fresh)
      in.error("merge (" + std::to_string(ids[0]) + ", " + std::to_string(ids[1]) +
               ") repeats line " + std::to_string(it->second));
    merges.push_back({ids[0], ids[1]});
  }

  std::vector<std::string> specials;
  std::unordered_map<std::string, int64_t> special_line;
  for (int64_t i = 0; i < n_specials; ++i) {
    const std::string_view line =
        in.expect("special token " + std::to_string(i + 1) + " of " + std::to_string(n_specials));
    if (line.empty()) in.error("empty special token");
    std::string s;
    for (size_t k = 0; k < line.size(); ++k) {
      const auto c = static_cast<unsigned char>(line[k]);
      if (c == '\\' && k + 1 < line.size() && line[k + 1] == '\\') {
        s += '\\';
        ++k;
      } else if (c == '\\') {
        const bool hex = k + 3 < line.size() && line[k + 1] == 'x';
        const int hi = hex ? hex_digit(line[k + 2]) : -1, lo = hex ? hex_digit(line[k + 3]) : -1;
        if (hi < 0 || lo < 0)
          in.error("bad escape in special token (expected \\\\ or \\xHH) at byte " +
                   std::to_string(k + 1));
        s += char(hi * 16 + lo);
        k += 3;
      } else if (c > 0x20 && c < 0x7f) {
        s += char(c);
      } else {
        in.error("byte " + std::to_string(k + 1) +
                 " of the special token must be escaped as \\xHH (a space, control or non-ASCII "
                 "byte)");
      }
    }
    const auto [it, fresh] = special_line.emplace(s, in.line_number());
    if (!fresh) in.error("special token repeats line " + std::to_string(it->second));
    specials.push_back(std::move(s));
  }
  std::string_view extra;
  if (in.next(&extra)) in.error("unexpected text after the last special token");
  return BPETokenizer(std::move(merges), std::move(specials));
}

}  // namespace needle::text
