// Element-wise ops: forward on NDArrays, gradients with Tensor ops (see ops_elementwise.h).
#include "needle/ops/ops_elementwise.h"

#include <cmath>

#include "needle/kernels.h"
#include "needle/ops/ops_shape.h"

namespace needle {

namespace {

const NDArray& data_of(const NodePtr& n) {
  return static_cast<TensorNode&>(*n).data();
}

// Broadcasts the inputs to one shape and promotes inputs[first_typed:] to one dtype (numpy's
// promote_types) by inserting broadcast_to / astype nodes, so that the op itself sees equal
// shapes and dtypes. (where keeps its condition's dtype: first_typed = 1.)
void unify_inputs(const std::string& op, std::vector<NodePtr>& inputs, size_t first_typed = 0) {
  for (auto& in : inputs)
    if (in->is_tuple()) fail<TypeError>("[", op, "] expects tensors, got a TensorTuple");
  const NDArray& first = data_of(inputs[0]);
  const DType first_dtype = data_of(inputs[first_typed]).dtype();
  bool same = true;
  for (size_t i = 1; i < inputs.size(); ++i) {
    const NDArray& d = data_of(inputs[i]);
    same = same && d.shape() == first.shape() && (i < first_typed || d.dtype() == first_dtype);
  }
  if (same) return;
  Shape shape = first.shape();
  DType dtype = first_dtype;
  for (size_t i = 1; i < inputs.size(); ++i) {
    const NDArray& d = data_of(inputs[i]);
    shape = NDArray::broadcast_shapes(op.c_str(), shape, d.shape());
    if (i >= first_typed) dtype = promote_types(dtype, d.dtype());
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor t(std::static_pointer_cast<TensorNode>(inputs[i]));
    if (i >= first_typed && t.dtype() != dtype) t = astype(t, dtype);
    if (t.shape() != shape) t = broadcast_to(t, shape);
    inputs[i] = t.node();
  }
}

Tensor apply_op(const OpPtr& op, std::vector<NodePtr> inputs) {
  return Value(make_node(op, std::move(inputs))).tensor();
}

// One shared instance per parameterless op: building a node then allocates no op.
template <class OpType>
const OpPtr& instance() {
  static const OpPtr op = std::make_shared<OpType>();
  return op;
}

constexpr double kSqrt1_2 = 0.70710678118654752440;     // 1 / sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1 / sqrt(2 pi)
constexpr double k2InvSqrtPi = 1.12837916709551257390;  // 2 / sqrt(pi)

}  // namespace

void promote_dtypes(const std::string& op, std::vector<NodePtr>& inputs) {
  bool mixed = false;
  DType dtype = DType::bool_;
  for (auto& in : inputs) {
    if (in->is_tuple()) fail<TypeError>("[", op, "] expects tensors, got a TensorTuple");
    DType d = data_of(in).dtype();
    mixed = mixed || d != data_of(inputs[0]).dtype();
    dtype = promote_types(dtype, d);
  }
  if (!mixed) return;
  for (auto& in : inputs) {
    Tensor t(std::static_pointer_cast<TensorNode>(in));
    if (t.dtype() != dtype) in = astype(t, dtype).node();
  }
}

void EWiseBinaryOp::prepare(std::vector<NodePtr>& inputs) const {
  if (inputs.size() == 2) unify_inputs(name(), inputs);
}

void Where::prepare(std::vector<NodePtr>& inputs) const {
  if (inputs.size() == 3) unify_inputs(name(), inputs, 1);
}

// --- Binary ---

NDArray EWiseAdd::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return args[0] + args[1];
  // END SOLUTION
}
std::vector<Tensor> EWiseAdd::gradient(const Tensor& out_grad, const Tensor&) const {
  // BEGIN SOLUTION hw1
  return {out_grad, out_grad};
  // END SOLUTION
}

NDArray EWiseSub::compute(const Args& args) const {
  return args[0] - args[1];
}
std::vector<Tensor> EWiseSub::gradient(const Tensor& out_grad, const Tensor&) const {
  return {out_grad, negate(out_grad)};
}

NDArray EWiseMul::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return args[0] * args[1];
  // END SOLUTION
}
std::vector<Tensor> EWiseMul::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw1
  Tensor a = node.input(0), b = node.input(1);
  return {out_grad * b, out_grad * a};
  // END SOLUTION
}

NDArray EWiseDiv::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return args[0] / args[1];
  // END SOLUTION
}
std::vector<Tensor> EWiseDiv::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw1
  Tensor b = node.input(1);
  Tensor grad_a = out_grad / b;
  return {grad_a, -(grad_a * node)};  // d(a/b)/db = -(a/b)/b
  // END SOLUTION
}

NDArray EWisePow::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return NDArray::binary(BinaryOp::power, args[0], args[1]);
  // END SOLUTION
}
std::vector<Tensor> EWisePow::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw1
  Tensor a = node.input(0), b = node.input(1);
  return {out_grad * b * power(a, b - 1.0), out_grad * node * log(a)};
  // END SOLUTION
}

NDArray Maximum::compute(const Args& args) const {
  return args[0].maximum(args[1]);
}
std::vector<Tensor> Maximum::gradient(const Tensor& out_grad, const Tensor& node) const {
  // Ties split the gradient evenly, as PyTorch's maximum does.
  const NDArray& a = node.input(0).data();
  const NDArray& b = node.input(1).data();
  NDArray to_a = (a > b) + (a == b) * 0.5;
  return {out_grad * Tensor(to_a), out_grad * Tensor(1.0 - to_a)};
}

// --- With a scalar ---

NDArray AddScalar::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return args[0] + operand();
  // END SOLUTION
}
std::vector<Tensor> AddScalar::gradient(const Tensor& out_grad, const Tensor&) const {
  // BEGIN SOLUTION hw1
  return {out_grad};
  // END SOLUTION
}

NDArray MulScalar::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return args[0] * operand();
  // END SOLUTION
}
std::vector<Tensor> MulScalar::gradient(const Tensor& out_grad, const Tensor&) const {
  // BEGIN SOLUTION hw1
  return {out_grad * scalar};
  // END SOLUTION
}

NDArray DivScalar::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return args[0] / operand();
  // END SOLUTION
}
std::vector<Tensor> DivScalar::gradient(const Tensor& out_grad, const Tensor&) const {
  // BEGIN SOLUTION hw1
  return {out_grad / scalar};
  // END SOLUTION
}

NDArray RDivScalar::compute(const Args& args) const {
  return operand() / args[0];
}
std::vector<Tensor> RDivScalar::gradient(const Tensor& out_grad, const Tensor& node) const {
  // d(s/a)/da = -s/a^2 = -(s/a)/a
  return {-(out_grad * node / node.input(0))};
}

NDArray PowerScalar::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return args[0].pow(operand());
  // END SOLUTION
}
std::vector<Tensor> PowerScalar::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw1
  if (scalar == 0.0) return {out_grad * 0.0};
  return {out_grad * power_scalar(node.input(0), scalar - 1.0) * scalar};
  // END SOLUTION
}

// --- Unary ---

NDArray Negate::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return -args[0];
  // END SOLUTION
}
std::vector<Tensor> Negate::gradient(const Tensor& out_grad, const Tensor&) const {
  // BEGIN SOLUTION hw1
  return {-out_grad};
  // END SOLUTION
}

NDArray Log::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return args[0].log();
  // END SOLUTION
}
std::vector<Tensor> Log::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw1
  return {out_grad / node.input(0)};
  // END SOLUTION
}

NDArray Exp::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return args[0].exp();
  // END SOLUTION
}
std::vector<Tensor> Exp::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw1
  return {out_grad * node};
  // END SOLUTION
}

NDArray ReLU::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return args[0].maximum(0.0);
  // END SOLUTION
}
std::vector<Tensor> ReLU::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw1
  // The derivative is a constant mask (relu is piecewise linear).
  return {out_grad * Tensor(node.input(0).data() > 0.0)};
  // END SOLUTION
}

NDArray Tanh::compute(const Args& args) const {
  // BEGIN SOLUTION hw1
  return args[0].tanh();
  // END SOLUTION
}
std::vector<Tensor> Tanh::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw1
  return {out_grad * (1.0 - node * node)};
  // END SOLUTION
}

NDArray Sigmoid::compute(const Args& args) const {
  return args[0].unary(UnaryOp::sigmoid);
}
std::vector<Tensor> Sigmoid::gradient(const Tensor& out_grad, const Tensor& node) const {
  return {out_grad * node * (1.0 - node)};
}

NDArray Sqrt::compute(const Args& args) const {
  return args[0].sqrt();
}
std::vector<Tensor> Sqrt::gradient(const Tensor& out_grad, const Tensor& node) const {
  return {out_grad / (node * 2.0)};
}

NDArray Abs::compute(const Args& args) const {
  return args[0].abs();
}
std::vector<Tensor> Abs::gradient(const Tensor& out_grad, const Tensor& node) const {
  return {out_grad * Tensor(node.input(0).data().unary(UnaryOp::sign))};
}

NDArray Erf::compute(const Args& args) const {
  return args[0].unary(UnaryOp::erf);
}
std::vector<Tensor> Erf::gradient(const Tensor& out_grad, const Tensor& node) const {
  Tensor a = node.input(0);
  return {out_grad * exp(-(a * a)) * k2InvSqrtPi};
}

namespace {
bool gelu_uses_tanh(const std::string& approximate) {
  if (approximate != "none" && approximate != "tanh")
    fail<ValueError>("[gelu] approximate must be 'none' or 'tanh', got '", approximate, "'");
  return approximate == "tanh";
}
constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2 / pi)
constexpr double kGeluCubic = 0.044715;
}  // namespace

GELU::GELU(const std::string& approximate) : tanh_approx(gelu_uses_tanh(approximate)) {}

NDArray GELU::compute(const Args& args) const {
  const NDArray& a = args[0];
  if (tanh_approx) return a * (((a * a * kGeluCubic + 1.0) * a * kSqrt2OverPi).tanh() + 1.0) * 0.5;
  return a * ((a * kSqrt1_2).unary(UnaryOp::erf) + 1.0) * 0.5;
}
std::vector<Tensor> GELU::gradient(const Tensor& out_grad, const Tensor& node) const {
  Tensor a = node.input(0);
  if (tanh_approx) {
    // y = 0.5 x (1 + t), t = tanh(u), u = k (x + c x^3):
    // dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2)
    Tensor a2 = a * a;
    Tensor t = tanh((a2 * kGeluCubic + 1.0) * a * kSqrt2OverPi);
    Tensor du = (a2 * (3.0 * kGeluCubic) + 1.0) * kSqrt2OverPi;
    return {out_grad * ((t + 1.0) * 0.5 + a * (1.0 - t * t) * du * 0.5)};
  }
  // d/dx x*Phi(x) = Phi(x) + x*phi(x)
  Tensor cdf = (erf(a * kSqrt1_2) + 1.0) * 0.5;
  Tensor pdf = exp(a * a * -0.5) * kInvSqrt2Pi;
  return {out_grad * (cdf + a * pdf)};
}

namespace {
// Runs an element-wise fused kernel on arrays of one shape, in the memory order of the first
// (nn.Conv's NCHW view of an NHWC result is read as the NHWC block, so no transpose is
// copied): each array as that order's compact block (the first copied only when it has no
// memory order, the rest when laid out otherwise), the result in that order too.
template <class Kernel, class... Rest>
NDArray run_in_memory_order(Kernel* kernel, const NDArray& first, const Rest&... rest) {
  const NDArray laid_out = first.memory_order() ? first : first.compact();
  const Axes order = *laid_out.memory_order();
  [[maybe_unused]] auto in_order = [&](const NDArray& a) {
    NDArray block = a.permute(order);
    return block.is_compact() ? block : block.compact();
  };
  const NDArray x = laid_out.permute(order);
  NDArray out = NDArray::empty(x.shape(), first.dtype(), first.device());
  kernel(x.view(), in_order(rest).view()..., out.view());
  return NDArray::from_memory_order(out, first.shape(), order);
}
}  // namespace

NDArray SiLU::compute(const Args& args) const {
  const NDArray& a = args[0];
  if (is_floating(a.dtype()))
    if (auto* fused = find_kernel<kernel::Silu>(kernel::kSilu, a.device()))
      return run_in_memory_order(fused, a);
  return a * a.unary(UnaryOp::sigmoid);
}
std::vector<Tensor> SiLU::gradient(const Tensor& out_grad, const Tensor& node) const {
  return {silu_grad(node.input(0), out_grad)};
}

NDArray SiLUGrad::compute(const Args& args) const {
  const NDArray &x = args[0], &dy = args[1];
  check_operand_pair("silu_grad", "x", x, "dy", dy);
  if (is_floating(x.dtype()))
    if (auto* fused = find_kernel<kernel::SiluGrad>(kernel::kSiluGrad, x.device()))
      return run_in_memory_order(fused, x, dy);
  // d/dx x*s(x) = s + x*s*(1-s)
  const NDArray s = x.unary(UnaryOp::sigmoid);
  return dy * s * (x * (1.0 - s) + 1.0);
}
std::vector<Tensor> SiLUGrad::gradient(const Tensor& out_grad, const Tensor& node) const {
  // dx = dy * f(x), f = s + x s (1 - s): d/dx = u * dy * f'(x) with
  // f' = s (1 - s) (2 + x (1 - 2 s)), and d/d(dy) = u * f(x), silu_grad itself.
  Tensor x = node.input(0), dy = node.input(1);
  Tensor s = sigmoid(x);
  Tensor df = s * (1.0 - s) * (x * (1.0 - s * 2.0) + 2.0);
  return {out_grad * dy * df, silu_grad(x, out_grad)};
}

// --- Selection and casts ---

// prepare() broadcast all three inputs to one shape and a, b to one dtype.
NDArray Where::compute(const Args& args) const {
  // BEGIN SOLUTION hw2
  return NDArray::where(args[0], args[1], args[2]);
  // END SOLUTION
}
std::vector<Tensor> Where::gradient(const Tensor& out_grad, const Tensor& node) const {
  // BEGIN SOLUTION hw2
  const Tensor cond = node.input(0);
  const Tensor zero = Tensor::zeros({}, out_grad.dtype(), out_grad.device());
  return {Tensor(), where(cond, out_grad, zero), where(cond, zero, out_grad)};
  // END SOLUTION
}

NDArray AsType::compute(const Args& args) const {
  return args[0].astype(dtype);
}
std::vector<Tensor> AsType::gradient(const Tensor& out_grad, const Tensor& node) const {
  return {astype(out_grad, node.input(0).dtype())};
}

NDArray ToDevice::compute(const Args& args) const {
  return args[0].to(*device);
}
std::vector<Tensor> ToDevice::gradient(const Tensor& out_grad, const Tensor& node) const {
  return {to_device(out_grad, node.input(0).device())};
}

// --- Functions ---

Tensor add(const Tensor& a, const Tensor& b) {
  return apply_op(instance<EWiseAdd>(), {a.node(), b.node()});
}
Tensor add_scalar(const Tensor& a, double scalar) {
  return apply_op(std::make_shared<AddScalar>(scalar), {a.node()});
}
Tensor subtract(const Tensor& a, const Tensor& b) {
  return apply_op(instance<EWiseSub>(), {a.node(), b.node()});
}
Tensor multiply(const Tensor& a, const Tensor& b) {
  return apply_op(instance<EWiseMul>(), {a.node(), b.node()});
}
Tensor mul_scalar(const Tensor& a, double scalar) {
  return apply_op(std::make_shared<MulScalar>(scalar), {a.node()});
}
Tensor divide(const Tensor& a, const Tensor& b) {
  return apply_op(instance<EWiseDiv>(), {a.node(), b.node()});
}
Tensor divide_scalar(const Tensor& a, double scalar) {
  return apply_op(std::make_shared<DivScalar>(scalar), {a.node()});
}
Tensor rdivide_scalar(const Tensor& a, double scalar) {
  return apply_op(std::make_shared<RDivScalar>(scalar), {a.node()});
}
Tensor power(const Tensor& a, const Tensor& b) {
  return apply_op(instance<EWisePow>(), {a.node(), b.node()});
}
Tensor power_scalar(const Tensor& a, double scalar) {
  return apply_op(std::make_shared<PowerScalar>(scalar), {a.node()});
}
Tensor maximum(const Tensor& a, const Tensor& b) {
  return apply_op(instance<Maximum>(), {a.node(), b.node()});
}
Tensor negate(const Tensor& a) {
  return apply_op(instance<Negate>(), {a.node()});
}
Tensor log(const Tensor& a) {
  return apply_op(instance<Log>(), {a.node()});
}
Tensor exp(const Tensor& a) {
  return apply_op(instance<Exp>(), {a.node()});
}
Tensor relu(const Tensor& a) {
  return apply_op(instance<ReLU>(), {a.node()});
}
Tensor tanh(const Tensor& a) {
  return apply_op(instance<Tanh>(), {a.node()});
}
Tensor sigmoid(const Tensor& a) {
  return apply_op(instance<Sigmoid>(), {a.node()});
}
Tensor sqrt(const Tensor& a) {
  return apply_op(instance<Sqrt>(), {a.node()});
}
Tensor abs(const Tensor& a) {
  return apply_op(instance<Abs>(), {a.node()});
}
Tensor erf(const Tensor& a) {
  return apply_op(instance<Erf>(), {a.node()});
}
Tensor gelu(const Tensor& a, const std::string& approximate) {
  static const OpPtr exact = std::make_shared<GELU>("none");
  static const OpPtr approx = std::make_shared<GELU>("tanh");
  return apply_op(gelu_uses_tanh(approximate) ? approx : exact, {a.node()});
}
Tensor silu(const Tensor& a) {
  return apply_op(instance<SiLU>(), {a.node()});
}
Tensor silu_grad(const Tensor& x, const Tensor& dy) {
  return apply_op(instance<SiLUGrad>(), {x.node(), dy.node()});
}
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b) {
  return apply_op(instance<Where>(), {condition.node(), a.node(), b.node()});
}
Tensor astype(const Tensor& a, DType dtype) {
  if (a.dtype() == dtype) return a;
  return apply_op(std::make_shared<AsType>(dtype), {a.node()});
}
Tensor to_device(const Tensor& a, Backend& device) {
  if (&a.device() == &device) return a;
  return apply_op(std::make_shared<ToDevice>(device), {a.node()});
}

}  // namespace needle
