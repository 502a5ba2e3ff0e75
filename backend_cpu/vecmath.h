// Vector math on contiguous runs, shared by the CPU kernels: exp, sigmoid and tanh through
// Eigen's packet math (the compiler cannot vectorize std::exp), each written so that the
// output may alias the input, and the row helpers of the softmax family (the finite shift
// of a row, and sums in independent lanes the compiler vectorizes without reordering any one
// lane). The element-wise kernels (ewise.cc) and the fused kernels (rnn.cc, softmax.cc,
// loss.cc, layer_norm.cc) all call these, so one op gives one result whichever kernel runs.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace needle::cpu::vec {

template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// Elements per chunk of the helpers that stage a result on the stack (so that the output
// may alias the input): small enough to stay in L1 next to the operands.
constexpr int64_t kChunk = 256;

// Below this argument exp's exact result is under the smallest normal number. Eigen clamps
// its argument there (exp(-inf) would be ~1e-38 in float, not 0), so the helpers give 0
// instead, which is as close and keeps exp(-inf) == 0.
template <class T>
constexpr T exp_floor() {
  return std::is_same_v<T, float> ? T(-87.3) : T(-708.3);
}

// o[0, n) = exp(a[0, n)). The vector exp runs over a chunk into a stack buffer and a plain
// select (which vectorizes) applies the floor: an Eigen select() around the exp expression
// would evaluate it one scalar at a time (Eigen 3.4 has no packet select), ~4x slower.
template <class T>
void exp_into(const T* a, T* o, int64_t n) {
  T e[kChunk];
  constexpr T lo = exp_floor<T>();
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t m = std::min(kChunk, n - c);
    ArrayMap<T>(e, m) = ConstArrayMap<T>(a + c, m).exp();
    for (int64_t i = 0; i < m; ++i) o[c + i] = a[c + i] < lo ? T(0) : e[i];
  }
}

// o[0, n) = sigmoid(a[0, n)) from e = exp(-|a|): 1 / (1 + e) for a >= 0, e / (1 + e)
// below, so no exp overflows.
template <class T>
void sigmoid_into(const T* a, T* o, int64_t n) {
  T e[kChunk];
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t m = std::min(kChunk, n - c);
    ArrayMap<T>(e, m) = (-ConstArrayMap<T>(a + c, m).abs()).exp();
    for (int64_t i = 0; i < m; ++i) {  // a select of plain values only: this vectorizes
      const T ei = e[i];
      o[c + i] = (a[c + i] >= 0 ? T(1) : ei) / (T(1) + ei);
    }
  }
}

// o[0, n) = tanh(a[0, n)): Eigen's vector tanh for float; std::tanh for double, whose
// Eigen version is not vectorized.
template <class T>
void tanh_into(const T* a, T* o, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    ArrayMap<T>(o, n) = ConstArrayMap<T>(a, n).tanh();
  } else {
    for (int64_t i = 0; i < n; ++i) o[i] = std::tanh(a[i]);
  }
}

// Independent accumulators of the lane sums below: enough to fill an AVX register of
// doubles twice, and each lane adds its elements in order.
constexpr int64_t kLanes = 8;

// One AVX register of T (8 floats, 4 doubles) as a GCC vector type, for loops that keep
// more than one lane sum: written with it they compile to packed arithmetic. GCC 12 turns
// the array form of two sums in one loop (s1[k] += a[i + k]; s2[k] += ...) into scalar adds
// and shuffles (the group-norm gradient spent 2x its forward there).
template <class T>
struct LaneVector {
  typedef T type __attribute__((vector_size(32)));
  static constexpr int64_t size = 32 / sizeof(T);
};
template <class T>
using Lanes = typename LaneVector<T>::type;
template <class T>
inline constexpr int64_t kLanesOf = LaneVector<T>::size;

// The kLanesOf<T> elements from p on (any alignment of T).
template <class T>
Lanes<T> load_lanes(const T* p) {
  Lanes<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The sum of v's lanes, in lane order (call as lane_total<T>: T is not deduced).
template <class T>
T lane_total(const Lanes<T>& v) {
  T s = 0;
  for (int64_t k = 0; k < kLanesOf<T>; ++k) s += v[k];
  return s;
}

// The sum of a[0, n), in kLanes lanes of T.
template <class T>
T sum(const T* a, int64_t n) {
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t k = 0; k < kLanes; ++k) acc[k] += a[i + k];
  T s = 0;
  for (; i < n; ++i) s += a[i];
  for (int64_t k = 0; k < kLanes; ++k) s += acc[k];
  return s;
}

// The sum of a[i] * b[i] over [0, n), in kLanes lanes of T.
template <class T>
T dot(const T* a, const T* b, int64_t n) {
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t k = 0; k < kLanes; ++k) acc[k] += a[i + k] * b[i + k];
  T s = 0;
  for (; i < n; ++i) s += a[i] * b[i];
  for (int64_t k = 0; k < kLanes; ++k) s += acc[k];
  return s;
}

// The largest of a[0, n) ignoring NaN, raised to T's lowest finite value: the shift of the
// softmax family (needle/ops/ops_reduce.h, shift_max), so that a row of all -inf shifts by a
// finite number and gives nan (as PyTorch) rather than exp(-inf - -inf). A NaN in the row
// need not win here: its exp makes the row's sum, hence every result of the row, NaN, as
// the composite's NaN shift does.
template <class T>
T row_shift(const T* a, int64_t n) {
  T acc[kLanes];
  for (int64_t k = 0; k < kLanes; ++k) acc[k] = -std::numeric_limits<T>::max();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t k = 0; k < kLanes; ++k) acc[k] = a[i + k] > acc[k] ? a[i + k] : acc[k];
  T m = -std::numeric_limits<T>::max();
  for (; i < n; ++i) m = a[i] > m ? a[i] : m;
  for (int64_t k = 0; k < kLanes; ++k) m = acc[k] > m ? acc[k] : m;
  return m;
}

// o[0, n) = exp(a[0, n) - shift), returning their sum (o may alias a): the vector exp of
// the shifted chunk, then one pass that applies exp_into's floor, stores and sums.
template <class T>
T exp_shifted_into(const T* a, T shift, T* o, int64_t n) {
  T e[kChunk];
  constexpr T lo = exp_floor<T>();
  T acc[kLanes] = {};
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t m = std::min(kChunk, n - c);
    ArrayMap<T>(e, m) = (ConstArrayMap<T>(a + c, m) - shift).exp();
    for (int64_t i = 0; i < m; ++i) e[i] = a[c + i] - shift < lo ? T(0) : e[i];
    int64_t i = 0;
    for (; i + kLanes <= m; i += kLanes)
      for (int64_t k = 0; k < kLanes; ++k) acc[k] += e[i + k];
    for (; i < m; ++i) acc[0] += e[i];
    std::copy(e, e + m, o + c);
  }
  T s = 0;
  for (int64_t k = 0; k < kLanes; ++k) s += acc[k];
  return s;
}

}  // namespace needle::cpu::vec
