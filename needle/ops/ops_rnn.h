// Recurrent-cell ops: one LSTM step on precomputed gate pre-activations, and a whole
// sequence of steps.
//
//   lstm_cell(gates, c_prev) -> (h_new, c_new)
//       gates (B, 4H) in the course's order i, f, g, o; c_prev (B, H);
//       i, f, o = sigmoid, g = tanh; c_new = f * c_prev + i * g, h_new = o * tanh(c_new).
//   lstm_cell_grad(gates, c_prev, dh, dc) -> (dgates, dc_prev)
//       its adjoint, given the adjoints of h_new and c_new.
//   lstm_sequence(xw, h0, c0, w_hh) -> (hs, cs)
//       T steps of one LSTM layer whose input projections xw (T, B, 4H) (x_t @ W_ih plus
//       both biases) are precomputed: gates_t = xw[t] + h_{t-1} @ w_hh (w_hh (H, 4H)), then
//       lstm_cell; hs and cs (T, B, H) hold every step's h and c, h0 and c0 (B, H) the
//       state before the first step.
//
// A cell (the Python module nn.LSTMCell) computes gates = x @ W_ih + h @ W_hh + bias with
// matmuls; lstm_cell is the rest of the step. Where the device has the fused
// kernels (kernel::LstmCell, kernel::LstmCellGrad in needle/kernels.h) the forward and the
// backward are one element-wise pass each; elsewhere both compose the same result from
// NDArray slices, sigmoid, tanh and products, which is also the kernels' test oracle. The
// gradient of lstm_cell_grad (second order) is a composite of Tensor ops, so any order
// works.
//
// lstm_sequence is the layer nn.LSTM runs where the device has the fused cell: the
// recurrence's matmuls and cells loop in C++ with no graph, and its gradient (Tensor ops,
// so again any order) recomputes every step's gates in one matmul from hs, runs the cells'
// adjoints backwards in time, and gets w_hh's gradient from one matmul over all T * B rows
// (a per-step graph sums T products of B rows each, which costs more than the whole
// recurrence). The inputs may be any views: the ops compact them only for a kernel, which
// reads contiguous rows.
#pragma once

#include "needle/ops/op.h"

namespace needle {

class LSTMCell final : public Op {
 public:
  std::string name() const override { return "lstm_cell"; }
  bool returns_tuple() const override { return true; }
  int arity() const override { return 2; }
  std::vector<NDArray> compute_tuple(const Args& args) const override;
  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const override;
};

// (gates, c_prev, dh, dc) -> (dgates, dc_prev): LSTMCell's adjoint, linear in (dh, dc).
class LSTMCellGrad final : public Op {
 public:
  std::string name() const override { return "lstm_cell_grad"; }
  bool returns_tuple() const override { return true; }
  int arity() const override { return 4; }
  std::vector<NDArray> compute_tuple(const Args& args) const override;
  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const override;
};

// (xw, h0, c0, w_hh) -> (hs, cs): T LSTM steps (see the top of the file).
class LSTMSequence final : public Op {
 public:
  std::string name() const override { return "lstm_sequence"; }
  bool returns_tuple() const override { return true; }
  int arity() const override { return 4; }
  std::vector<NDArray> compute_tuple(const Args& args) const override;
  std::vector<Value> gradient_values(const Value& out_grad, const Value& node) const override;
};

// --- Functions ---
// (h_new, c_new), each (B, H). gates and c_prev: one float dtype, one device.
TensorTuple lstm_cell(const Tensor& gates, const Tensor& c_prev);
// (dgates (B, 4H), dc_prev (B, H)) for the adjoints dh, dc of lstm_cell's two outputs.
TensorTuple lstm_cell_grad(const Tensor& gates, const Tensor& c_prev, const Tensor& dh,
                           const Tensor& dc);
// (hs, cs), each (T, B, H), for xw (T, B, 4H) with T >= 1, h0 and c0 (B, H), w_hh (H, 4H).
TensorTuple lstm_sequence(const Tensor& xw, const Tensor& h0, const Tensor& c0, const Tensor& w_hh);

}  // namespace needle
