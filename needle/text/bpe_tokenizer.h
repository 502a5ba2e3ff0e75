// Byte-level BPE tokenizer (GPT-2 style): the vocabulary is the 256 byte values (ids 0..255),
// then one token per learned merge in the order training learned them, then the special
// tokens. Text is first cut into pieces (runs of letters, digits, other symbols, whitespace;
// see PieceSplitter) and merges never cross a piece boundary. Everything here works on bytes:
// decode(encode(s)) == s for every byte string, valid UTF-8 or not. The file format, the
// pre-split rules and the guarantees are documented in docs/tokenizer.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace needle::text {

// One learned merge: the tokens `left` and `right`, adjacent, become one new token.
struct Merge {
  int32_t left;
  int32_t right;
  bool operator==(const Merge& o) const { return left == o.left && right == o.right; }
  bool operator!=(const Merge& o) const { return !(*this == o); }
};

// Cuts text into the pieces BPE works inside, in order; the pieces concatenate back to the
// text. Bytes are classed as letters (A-Z, a-z and every byte >= 0x80, so a UTF-8 multi-byte
// character is never cut and joins the letters around it), digits (0-9), whitespace (space,
// \t, \n, \v, \f, \r) and other (the rest: punctuation, control bytes, NUL). As GPT-2's
// pattern over those classes, a piece is the first of:
//   's 't 're 've 'm 'll 'd          an ASCII contraction (lowercase, as GPT-2)
//   an optional ' ' + a letter run, or + a digit run, or + a run of other bytes
//   a whitespace run, less its last byte when a non-space byte follows (that last byte
//   then leads the next piece if it is ' ', else stands alone)
class PieceSplitter {
 public:
  explicit PieceSplitter(std::string_view text) : text_(text) {}
  // The next piece; false once the text is used up.
  bool next(std::string_view* piece);

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

// Every piece of `text` (PieceSplitter).
std::vector<std::string_view> pre_split(std::string_view text);

class BPETokenizer {
 public:
  static constexpr int32_t kNumBytes = 256;
  // The largest vocabulary: ids are int32 inside, int64 at the API.
  static constexpr int64_t kMaxVocabSize = int64_t(1) << 30;

  // The untrained tokenizer: the 256 byte tokens, no merges, no special tokens.
  BPETokenizer();
  // A tokenizer with these merges and special tokens (what load reads): ValueError when a
  // merge uses an id that is not yet defined (merge i may use ids < 256 + i), repeats an
  // earlier merge, or a special token is empty or repeated.
  BPETokenizer(std::vector<Merge> merges, std::vector<std::string> special_tokens);
  BPETokenizer(const BPETokenizer&) = default;
  BPETokenizer& operator=(const BPETokenizer&) = default;
  // A moved-from tokenizer is the untrained one.
  BPETokenizer(BPETokenizer&& other) noexcept;
  BPETokenizer& operator=(BPETokenizer&& other) noexcept;

  // Learns merges from `text` until the vocabulary has `vocab_size` tokens (256 bytes +
  // merges + special tokens), replacing what the tokenizer held. Occurrences of the special
  // tokens are cut out of the text first, so no merge spans or rebuilds one. Each step merges
  // the most frequent adjacent pair of tokens (counted over pieces); ties go to the smallest
  // (left id, right id). Stops early, with a smaller vocabulary, when no adjacent pair is left
  // (every piece is one token). ValueError when vocab_size < 256 + special tokens or above
  // kMaxVocabSize, or for an empty or repeated special token.
  void train(std::string_view text, int64_t vocab_size,
             const std::vector<std::string>& special_tokens = {});

  // Token ids of `text`: special tokens where they occur (the longest one at the earliest
  // position wins), and between them each piece's bytes merged by rank (the earliest learned
  // merge first, leftmost first). Safe to call from several threads at once.
  std::vector<int64_t> encode(std::string_view text) const;
  // The bytes of the tokens; ValueError naming the id when one is outside [0, vocab_size).
  std::string decode(const int64_t* ids, size_t n) const;
  std::string decode(const std::vector<int64_t>& ids) const {
    return decode(ids.data(), ids.size());
  }

  // Writes the tokenizer to `path` atomically (temporary file, fsync, rename) in the text
  // format of docs/tokenizer.md; RuntimeError naming the path when it cannot be written.
  void save(const std::string& path) const;
  // Reads a file that save wrote; a damaged one is a ValueError naming the file and line.
  static BPETokenizer load(const std::string& path);

  int64_t vocab_size() const {
    return kNumBytes + int64_t(merges_.size() + special_tokens_.size());
  }
  const std::vector<Merge>& merges() const { return merges_; }
  const std::vector<std::string>& special_tokens() const { return special_tokens_; }
  // The id of special token i (they follow the merges).
  int64_t special_token_id(size_t i) const { return kNumBytes + int64_t(merges_.size() + i); }
  // The bytes one token stands for (ValueError outside [0, vocab_size)).
  const std::string& token_bytes(int64_t id) const;

 private:
  struct Tables;  // ranks of merges, token bytes, special-token lookup, the piece cache
  // The first special token in text[from, ...): its position (npos when none), id and length.
  size_t find_special(std::string_view text, size_t from, int64_t* id, size_t* length) const;
  void reset() noexcept;
  // tables_, or the untrained tokenizer's when tables_ is empty (after a move).
  const Tables& tables() const;
  // Checks the merges and special tokens (see the constructor) and indexes them.
  static std::shared_ptr<const Tables> build_tables(const std::vector<Merge>& merges,
                                                    const std::vector<std::string>& specials);
  std::vector<Merge> merges_;
  std::vector<std::string> special_tokens_;
  std::shared_ptr<const Tables> tables_;  // shared by copies: they hold the same merges
};

}  // namespace needle::text
