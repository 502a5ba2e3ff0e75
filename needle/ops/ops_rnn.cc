// The LSTM cell op and its adjoint (see ops_rnn.h): fused kernels where the device has
// them, NDArray composites elsewhere, and a Tensor composite for the second order; and the
// sequence op, a loop of cells whose gradient is Tensor ops.
#include "needle/ops/ops_rnn.h"

#include "needle/kernels.h"
#include "needle/ops/ops_elementwise.h"
#include "needle/ops/ops_linalg.h"
#include "needle/ops/ops_shape.h"
#include "needle/ops/ops_tuple.h"

namespace needle {

namespace {

// Checks gates (B, 4H) and c_prev (B, H) of one float dtype on one device; returns H.
int64_t check_cell(const char* op, const NDArray& gates, const NDArray& c_prev) {
  if (!is_floating(gates.dtype()))
    fail<TypeError>("[", op, "] needs float32 or float64 inputs, got gates of dtype ",
                    dtype_name(gates.dtype()));
  if (c_prev.dtype() != gates.dtype())
    fail<TypeError>("[", op, "] gates of dtype ", dtype_name(gates.dtype()),
                    " and c_prev of dtype ", dtype_name(c_prev.dtype()), " differ");
  if (&c_prev.device() != &gates.device())
    fail<RuntimeError>("[", op, "] inputs are on different devices: ", gates.device().name(),
                       " and ", c_prev.device().name());
  const Shape& s = gates.shape();
  if (s.size() != 2 || s[1] % 4 != 0)
    fail<ValueError>("[", op,
                     "] expects gates of shape (B, 4H), the pre-activations i, f, g, o "
                     "side by side, got shape ",
                     shape_str(s));
  const int64_t h = s[1] / 4;
  if (c_prev.shape() != Shape{s[0], h})
    fail<ValueError>("[", op, "] gates of shape ", shape_str(s), " need c_prev of shape (", s[0],
                     ", ", h, "), got shape ", shape_str(c_prev.shape()));
  return h;
}

// Checks an adjoint `what` of lstm_cell's outputs: c_prev's shape, dtype and device.
void check_adjoint(const char* what, const NDArray& a, const NDArray& c_prev) {
  if (a.dtype() != c_prev.dtype())
    fail<TypeError>("[lstm_cell_grad] ", what, " of dtype ", dtype_name(a.dtype()),
                    " and c_prev of dtype ", dtype_name(c_prev.dtype()), " differ");
  if (&a.device() != &c_prev.device())
    fail<RuntimeError>("[lstm_cell_grad] inputs are on different devices: ", c_prev.device().name(),
                       " and ", a.device().name());
  if (a.shape() != c_prev.shape())
    fail<ValueError>("[lstm_cell_grad] ", what, " of shape ", shape_str(a.shape()),
                     " does not match c_prev of shape ", shape_str(c_prev.shape()));
}

void check_arity(const char* op, size_t got, size_t want) {
  if (got != want) fail<ValueError>("[", op, "] takes ", want, " tensors, got ", got, " arrays");
}

// Columns [k * h, (k + 1) * h) of a (B, 4H) array or tensor: gate k of i, f, g, o.
IndexKey gate_columns(int64_t k, int64_t h) {
  return {Index::all(), Index::slice(k * h, (k + 1) * h)};
}

// The activations of the four gates: sigmoid for i, f, o and tanh for g.
struct Gates {
  NDArray i, f, g, o;
};
Gates activations(const NDArray& gates, int64_t h) {
  auto col = [&](int64_t k) { return gates.getitem(gate_columns(k, h)); };
  return {col(0).unary(UnaryOp::sigmoid), col(1).unary(UnaryOp::sigmoid), col(2).tanh(),
          col(3).unary(UnaryOp::sigmoid)};
}

// One step on NDArrays: (h_new, c_new) from the fused kernel where the device has it,
// else from the composite.
std::vector<NDArray> cell_forward(const NDArray& gates, const NDArray& c_prev, int64_t h) {
  if (auto* fused = find_kernel<kernel::LstmCell>(kernel::kLstmCell, gates.device())) {
    const NDArray gc = gates.compact(), cc = c_prev.compact();  // the kernel reads rows
    NDArray h_new = NDArray::empty(c_prev.shape(), c_prev.dtype(), c_prev.device());
    NDArray c_new = NDArray::empty(c_prev.shape(), c_prev.dtype(), c_prev.device());
    if (c_prev.size()) fused(gc.view(), cc.view(), h_new.view(), c_new.view());
    return {h_new, c_new};
  }
  const Gates a = activations(gates, h);
  NDArray c_new = a.f * c_prev + a.i * a.g;
  return {a.o * c_new.tanh(), c_new};
}

// Checks lstm_sequence's operands: xw (T, B, 4H) with T >= 1, h0 and c0 (B, H), w_hh
// (H, 4H), one float dtype and one device. Returns H.
int64_t check_sequence(const NDArray& xw, const NDArray& h0, const NDArray& c0,
                       const NDArray& w_hh) {
  const char* op = "lstm_sequence";
  const Shape& s = xw.shape();
  if (s.size() != 3 || s[0] == 0 || s[2] % 4 != 0)
    fail<ValueError>("[", op,
                     "] expects xw of shape (T, B, 4H) with T >= 1, the input "
                     "projections of T steps, got shape ",
                     shape_str(s));
  const int64_t h = s[2] / 4;
  for (const NDArray* a : {&h0, &c0, &w_hh}) {
    if (a->dtype() != xw.dtype())
      fail<TypeError>("[", op, "] xw of dtype ", dtype_name(xw.dtype()),
                      " and an operand of dtype ", dtype_name(a->dtype()), " differ");
    if (&a->device() != &xw.device())
      fail<RuntimeError>("[", op, "] inputs are on different devices: ", xw.device().name(),
                         " and ", a->device().name());
  }
  if (!is_floating(xw.dtype()))
    fail<TypeError>("[", op, "] needs float32 or float64 inputs, got ", dtype_name(xw.dtype()));
  const Shape state{s[1], h};
  if (h0.shape() != state || c0.shape() != state || w_hh.shape() != Shape{h, 4 * h})
    fail<ValueError>("[", op, "] xw of shape ", shape_str(s), " needs h0 and c0 of shape ",
                     shape_str(state), " and w_hh of shape (", h, ", ", 4 * h, "), got ",
                     shape_str(h0.shape()), ", ", shape_str(c0.shape()), " and ",
                     shape_str(w_hh.shape()));
  return h;
}

}  // namespace

std::vector<NDArray> LSTMCell::compute_tuple(const Args& args) const {
  check_arity("lstm_cell", args.size(), 2);
  const int64_t h = check_cell("lstm_cell", args[0], args[1]);
  return cell_forward(args[0], args[1], h);
}

std::vector<Value> LSTMCell::gradient_values(const Value& out_grad, const Value& node) const {
  // The adjoints of (h_new, c_new): an output the consumer did not use arrives as zeros
  // (tuple_get_item's gradient fills the other elements of the tuple).
  TensorTuple g = out_grad.tuple();
  const auto& inputs = node.node()->inputs();
  TensorTuple grads = lstm_cell_grad(input_tensor(node, 0), input_tensor(node, 1), g[0], g[1]);
  return {inputs[0]->requires_grad() ? Value(grads[0]) : Value(),
          inputs[1]->requires_grad() ? Value(grads[1]) : Value()};
}

std::vector<NDArray> LSTMCellGrad::compute_tuple(const Args& args) const {
  check_arity("lstm_cell_grad", args.size(), 4);
  const int64_t h = check_cell("lstm_cell_grad", args[0], args[1]);
  check_adjoint("dh", args[2], args[1]);
  check_adjoint("dc", args[3], args[1]);
  const NDArray &gates = args[0], &c_prev = args[1], &dh = args[2], &dc = args[3];
  if (auto* fused = find_kernel<kernel::LstmCellGrad>(kernel::kLstmCellGrad, gates.device())) {
    NDArray dgates = NDArray::empty(gates.shape(), gates.dtype(), gates.device());
    NDArray dc_prev = NDArray::empty(c_prev.shape(), c_prev.dtype(), c_prev.device());
    if (c_prev.size())
      fused(gates.compact().view(), c_prev.compact().view(), dh.compact().view(),
            dc.compact().view(), dgates.view(), dc_prev.view());
    return {dgates, dc_prev};
  }
  // The chain rule through c_new = f * c_prev + i * g and h_new = o * tanh(c_new): s is the
  // whole adjoint of c_new (its own, and h_new's through the tanh).
  const Gates a = activations(gates, h);
  const NDArray t = (a.f * c_prev + a.i * a.g).tanh();
  const NDArray s = dc + dh * a.o * (1.0 - t * t);
  NDArray dgates =
      NDArray::concatenate({s * a.g * a.i * (1.0 - a.i), s * c_prev * a.f * (1.0 - a.f),
                            s * a.i * (1.0 - a.g * a.g), dh * t * a.o * (1.0 - a.o)},
                           1);
  return {dgates, s * a.f};
}

std::vector<Value> LSTMCellGrad::gradient_values(const Value& out_grad, const Value& node) const {
  // The adjoint of the adjoint, from Tensor ops (so every higher order works too). The
  // first-order map contracted with the cotangent u = (u_gates, u_c) of (dgates, dc_prev)
  // is L = s * P + u_o * dh * t * o', where x' is a gate's derivative (i' = i (1 - i),
  // g' = 1 - g^2, t' = 1 - t^2), s = dc + dh * o * t' and
  // P = u_i g i' + u_f c_prev f' + u_g i g' + u_c f; differentiate L in each input.
  // Q = dL/dc_new collects what reaches the gates and c_prev through c_new;
  // i'' = i' (1 - 2 i) (likewise f, o) and g'' = -2 g g'.
  const auto& inputs = node.node()->inputs();
  Tensor gates = input_tensor(node, 0), c_prev = input_tensor(node, 1);
  Tensor dh = input_tensor(node, 2), dc = input_tensor(node, 3);
  TensorTuple u = out_grad.tuple();
  Tensor u_gates = u[0], u_c = u[1];
  const int64_t h = c_prev.shape()[1];
  auto col = [&](const Tensor& x, int64_t k) { return getitem(x, gate_columns(k, h)); };
  Tensor i = sigmoid(col(gates, 0)), f = sigmoid(col(gates, 1));
  Tensor g = tanh(col(gates, 2)), o = sigmoid(col(gates, 3));
  Tensor u_i = col(u_gates, 0), u_f = col(u_gates, 1), u_g = col(u_gates, 2), u_o = col(u_gates, 3);
  Tensor di = i * (1.0 - i), df = f * (1.0 - f), dg = 1.0 - g * g, d_o = o * (1.0 - o);
  Tensor t = tanh(f * c_prev + i * g), dt = 1.0 - t * t;
  Tensor s = dc + dh * o * dt;
  Tensor p = u_i * g * di + u_f * c_prev * df + u_g * i * dg + u_c * f;
  Tensor q = u_o * dh * d_o * dt - 2.0 * p * dh * o * t * dt;

  std::vector<Value> grads(4);
  if (inputs[0]->requires_grad()) {
    Tensor gi = s * (u_i * g * di * (1.0 - 2.0 * i) + u_g * dg * di) + q * g * di;
    Tensor gf = s * (u_f * c_prev * df * (1.0 - 2.0 * f) + u_c * df) + q * c_prev * df;
    Tensor gg = s * (u_i * di * dg - 2.0 * u_g * i * g * dg) + q * i * dg;
    Tensor go = dh * d_o * (p * dt + u_o * t * (1.0 - 2.0 * o));
    grads[0] = concat({gi, gf, gg, go}, 1);
  }
  if (inputs[1]->requires_grad()) grads[1] = s * u_f * df + q * f;
  if (inputs[2]->requires_grad()) grads[2] = o * dt * p + u_o * t * d_o;
  if (inputs[3]->requires_grad()) grads[3] = p;
  return grads;
}

std::vector<NDArray> LSTMSequence::compute_tuple(const Args& args) const {
  check_arity("lstm_sequence", args.size(), 4);
  const NDArray &xw = args[0], &w_hh = args[3];
  const int64_t h = check_sequence(xw, args[1], args[2], w_hh);
  const int64_t steps = xw.shape()[0], batch = xw.shape()[1];
  NDArray hs = NDArray::empty({steps, batch, h}, xw.dtype(), xw.device());
  NDArray cs = NDArray::empty({steps, batch, h}, xw.dtype(), xw.device());
  NDArray h_prev = args[1], c_prev = args[2];
  for (int64_t t = 0; t < steps; ++t) {
    const IndexKey step{Index::at(t)};
    const std::vector<NDArray> h_c =
        cell_forward(xw.getitem(step) + h_prev.matmul(w_hh), c_prev, h);
    hs.getitem(step).assign(h_c[0]);
    cs.getitem(step).assign(h_c[1]);
    h_prev = h_c[0];
    c_prev = h_c[1];
  }
  return {hs, cs};
}

std::vector<Value> LSTMSequence::gradient_values(const Value& out_grad, const Value& node) const {
  // The adjoints of (hs, cs) (an unused one arrives as zeros). Every step's h_{t-1} and
  // c_{t-1} are h0, c0 followed by all but the last of hs, cs; the gates follow from them
  // in one matmul.
  const auto& inputs = node.node()->inputs();
  const TensorTuple g = out_grad.tuple(), outputs = node.tuple();
  Tensor xw = input_tensor(node, 0), h0 = input_tensor(node, 1), c0 = input_tensor(node, 2);
  Tensor w_hh = input_tensor(node, 3);
  const int64_t steps = xw.shape()[0], batch = xw.shape()[1], h = w_hh.shape()[0];
  auto with_first = [&](const Tensor& first, const Tensor& all) {
    if (steps == 1) return reshape(first, {1, batch, h});
    return concat({reshape(first, {1, batch, h}), getitem(all, {Index::slice(0, steps - 1)})}, 0);
  };
  const Tensor h_prev = reshape(with_first(h0, outputs[0]), {steps * batch, h});
  const TensorTuple c_prev = split(with_first(c0, outputs[1]), 0);
  const TensorTuple gates = split(xw + reshape(matmul(h_prev, w_hh), {steps, batch, 4 * h}), 0);
  const TensorTuple dhs = split(g[0], 0), dcs = split(g[1], 0);
  // Backwards in time: step t's cell gets its outputs' own adjoints plus what step t + 1
  // sends back through h_t (dgates_{t+1} @ w_hh^T) and c_t.
  const Tensor w_hh_t = transpose(w_hh);
  std::vector<Tensor> dgates(static_cast<size_t>(steps));
  Tensor dh, dc;  // what reaches h_t and c_t from later steps
  for (int64_t t = steps - 1; t >= 0; --t) {
    const TensorTuple d = lstm_cell_grad(gates[t], c_prev[t], dh.defined() ? dhs[t] + dh : dhs[t],
                                         dc.defined() ? dcs[t] + dc : dcs[t]);
    dgates[size_t(t)] = d[0];
    dc = d[1];
    if (t > 0 || inputs[1]->requires_grad()) dh = matmul(d[0], w_hh_t);
  }
  const Tensor dxw = stack(dgates, 0);
  std::vector<Value> grads(4);
  if (inputs[0]->requires_grad()) grads[0] = dxw;
  if (inputs[1]->requires_grad()) grads[1] = dh;
  if (inputs[2]->requires_grad()) grads[2] = dc;
  if (inputs[3]->requires_grad())
    grads[3] = matmul(transpose(h_prev), reshape(dxw, {steps * batch, 4 * h}));
  return grads;
}

// --- Functions ---

TensorTuple lstm_cell(const Tensor& gates, const Tensor& c_prev) {
  static const OpPtr op = std::make_shared<LSTMCell>();
  return TensorTuple::make_from_op(op, {gates, c_prev});
}

TensorTuple lstm_cell_grad(const Tensor& gates, const Tensor& c_prev, const Tensor& dh,
                           const Tensor& dc) {
  static const OpPtr op = std::make_shared<LSTMCellGrad>();
  return TensorTuple::make_from_op(op, {gates, c_prev, dh, dc});
}

TensorTuple lstm_sequence(const Tensor& xw, const Tensor& h0, const Tensor& c0,
                          const Tensor& w_hh) {
  static const OpPtr op = std::make_shared<LSTMSequence>();
  return TensorTuple::make_from_op(op, {xw, h0, c0, w_hh});
}

}  // namespace needle
