// BPE training (BPETokenizer::train): the table of unique pieces ("words") with their counts,
// the count of every adjacent token pair with the words that hold it, and a priority queue of
// pairs by count. Each step (merge_most_frequent_pair, the hw5 region) takes the most frequent
// pair, rewrites only the words that hold it and moves their pair counts, so a step costs what
// those words cost rather than a pass over the whole table.
#include <algorithm>
#include <queue>
#include <unordered_map>

#include "needle/error.h"
#include "needle/text/bpe_tokenizer.h"

namespace needle::text {
namespace {

// A unique piece of the training text, as tokens, and how often the text holds it.
struct Word {
  std::vector<int32_t> tokens;
  int64_t count = 0;
  int64_t last_step = -1;  // the last merge step that rewrote it (skips repeated listings)
};

// How often a pair occurs over all words (weighted by the words' counts), and the words that
// held it when it appeared in them: a word may no longer hold it (the list is never pruned),
// but every word that holds it is listed.
struct PairStats {
  int64_t count = 0;
  std::vector<int32_t> words;
};

// A pair and the count it had when queued; out of date once the pair's count changed. The
// queue's top is the largest count, and among equal counts the smallest (left, right).
struct Candidate {
  int64_t count;
  uint64_t pair;
  bool operator<(const Candidate& o) const {
    return count != o.count ? count < o.count : pair > o.pair;
  }
};

struct TrainState {
  std::vector<Word> words;
  std::unordered_map<uint64_t, PairStats> pairs;      // key(left, right) -> its stats
  std::priority_queue<Candidate> queue;               // every pair's current count is queued
  std::vector<Merge> merges;                          // learned so far, in order
  std::vector<std::pair<uint64_t, int64_t>> changes;  // count changes of this step

  static uint64_t key(int32_t left, int32_t right) {
    return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
  }
  static Merge merge_of(uint64_t key) { return {int32_t(key >> 32), int32_t(key & 0xffffffffu)}; }
  // The id the next merge creates.
  int32_t next_id() const { return BPETokenizer::kNumBytes + int32_t(merges.size()); }

  // Records that `pair`'s count changes by `delta` (applied by commit).
  void change(uint64_t pair, int64_t delta) { changes.emplace_back(pair, delta); }
  // Records that word `w` now holds `pair`.
  void add_word(uint64_t pair, int32_t w) {
    std::vector<int32_t>& list = pairs[pair].words;
    if (list.empty() || list.back() != w) list.push_back(w);
  }
  // Applies the recorded changes: each changed pair's new count is queued, and a pair that no
  // longer occurs is dropped.
  void commit() {
    std::sort(changes.begin(), changes.end());
    for (size_t i = 0; i < changes.size();) {
      const uint64_t pair = changes[i].first;
      int64_t delta = 0;
      for (; i < changes.size() && changes[i].first == pair; ++i) delta += changes[i].second;
      if (delta == 0) continue;
      auto it = pairs.find(pair);
      if (it == pairs.end()) it = pairs.emplace(pair, PairStats{}).first;
      it->second.count += delta;
      if (it->second.count > 0)
        queue.push({it->second.count, pair});
      else
        pairs.erase(it);
    }
    changes.clear();
  }
};

// One training step: finds the most frequent adjacent pair (the queue's top; entries whose count
// is out of date are skipped), appends it to s.merges as the token s.next_id(), and rewrites
// every word holding it: left to right, each non-overlapping occurrence of (left, right)
// becomes the new token. Pair counts follow through s.change and s.commit: each occurrence
// takes the merged pair and the pairs it formed with its neighbours out, and puts the pairs of
// the new token with those neighbours in (only around occurrences, so a long word costs a
// scan, not a recount); s.add_word lists the word under each pair with the new token.
// Returns false, learning nothing, when no pair is left.
bool merge_most_frequent_pair(TrainState& s) {
  // BEGIN SOLUTION hw5
  uint64_t best = 0;
  for (;;) {
    if (s.queue.empty()) return false;
    const Candidate top = s.queue.top();
    s.queue.pop();
    const auto it = s.pairs.find(top.pair);
    if (it != s.pairs.end() && it->second.count == top.count) {
      best = top.pair;
      break;
    }
  }
  const Merge m = TrainState::merge_of(best);
  const int32_t id = s.next_id();
  s.merges.push_back(m);
  const int64_t step = int64_t(s.merges.size());
  const std::vector<int32_t> holders = std::move(s.pairs[best].words);
  for (const int32_t w : holders) {
    Word& word = s.words[size_t(w)];
    if (word.last_step == step) continue;  // listed twice
    word.last_step = step;
    std::vector<int32_t>& t = word.tokens;
    const size_t n = t.size();
    const int64_t c = word.count;
    auto at = [&](size_t i) { return i + 1 < n && t[i] == m.left && t[i + 1] == m.right; };
    size_t out = 0;
    bool merged_before = false;  // the previous two tokens were an occurrence, now `id`
    for (size_t i = 0; i < n;) {
      if (!at(i)) {
        t[out++] = t[i++];
        merged_before = false;
        continue;
      }
      s.change(best, -c);
      if (out > 0) {  // the left neighbour: (x, left) becomes (x, id); x may be a new `id`
        const int32_t x = t[out - 1];
        s.change(TrainState::key(merged_before ? m.right : x, m.left), -c);
        s.change(TrainState::key(x, id), c);
        s.add_word(TrainState::key(x, id), w);
      }
      // The right neighbour, unless it starts the next occurrence (which takes it as its left).
      if (i + 2 < n && !at(i + 2)) {
        s.change(TrainState::key(m.right, t[i + 2]), -c);
        s.change(TrainState::key(id, t[i + 2]), c);
        s.add_word(TrainState::key(id, t[i + 2]), w);
      }
      t[out++] = id;
      i += 2;
      merged_before = true;
    }
    t.resize(out);
  }
  s.commit();
  return true;
  // END SOLUTION
}

}  // namespace

void BPETokenizer::train(std::string_view text, int64_t vocab_size,
                         const std::vector<std::string>& special_tokens) {
  // Checks the special tokens and finds them in the text.
  const BPETokenizer specials({}, special_tokens);
  const int64_t least = kNumBytes + int64_t(special_tokens.size());
  if (vocab_size < least)
    fail<ValueError>("[BPETokenizer.train] vocab_size ", vocab_size, " is below ", least,
                     " (the 256 byte tokens and ", special_tokens.size(), " special tokens)");
  if (vocab_size > kMaxVocabSize)
    fail<ValueError>("[BPETokenizer.train] vocab_size ", vocab_size, " is above the limit of ",
                     kMaxVocabSize);

  // The word table: every unique piece of the text between special tokens, with its count.
  std::unordered_map<std::string_view, int64_t> counts;
  auto count_pieces = [&](std::string_view segment) {
    PieceSplitter splitter(segment);
    std::string_view piece;
    while (splitter.next(&piece)) ++counts[piece];
  };
  for (size_t pos = 0;;) {
    int64_t id = 0;
    size_t length = 0;
    const size_t at = specials.find_special(text, pos, &id, &length);
    if (at == std::string_view::npos) {
      count_pieces(text.substr(pos));
      break;
    }
    count_pieces(text.substr(pos, at - pos));
    pos = at + length;
  }

  TrainState s;
  for (const auto& [piece, count] : counts) {
    if (piece.size() < 2) continue;  // a single byte never takes part in a pair
    Word word;
    word.count = count;
    for (const char c : piece) word.tokens.push_back(static_cast<unsigned char>(c));
    s.words.push_back(std::move(word));
  }
  for (size_t w = 0; w < s.words.size(); ++w) {
    const Word& word = s.words[w];
    for (size_t i = 0; i + 1 < word.tokens.size(); ++i) {
      const uint64_t pair = TrainState::key(word.tokens[i], word.tokens[i + 1]);
      s.change(pair, word.count);
      s.add_word(pair, int32_t(w));
    }
  }
  s.commit();

  const int64_t n_merges = vocab_size - least;
  while (int64_t(s.merges.size()) < n_merges && !s.queue.empty() && merge_most_frequent_pair(s)) {
  }
  *this = BPETokenizer(std::move(s.merges), special_tokens);
}

}  // namespace needle::text
