// Element-wise ops: arithmetic with tensors and scalars, the unary math functions and
// activations, maximum, where, and dtype/device casts.
//
// The binary tensor ops broadcast (numpy rules) and promote dtypes by inserting explicit
// broadcast_to / astype nodes before the op (EWiseBinaryOp::prepare), so each op's own
// compute sees equal shapes and dtypes and its gradient stays the textbook one.
#pragma once

#include "needle/ops/op.h"

namespace needle {

// Base of the binary tensor ops: broadcasts and promotes the two inputs.
class EWiseBinaryOp : public TensorOp {
 public:
  int arity() const override { return 2; }
  void prepare(std::vector<NodePtr>& inputs) const override;
};

// Base of the ops on one tensor and a scalar. `kind` is what the scalar was (a Python int
// keeps an integer tensor integer, a float makes it float64: docs/dtypes.md); the C++
// helpers below pass doubles, i.e. floats.
class ScalarOp : public TensorOp {
 public:
  explicit ScalarOp(double scalar, Scalar::Kind kind = Scalar::Kind::floating)
      : scalar(scalar), kind(kind) {}
  int arity() const override { return 1; }
  // The scalar with its kind, as NDArray's scalar ops take it.
  Scalar operand() const {
    Scalar s(scalar);
    s.kind = kind;
    return s;
  }
  const double scalar;
  const Scalar::Kind kind;
};

#define NEEDLE_DECLARE_BINARY_OP(Class, op_name) \
  class Class final : public EWiseBinaryOp {     \
   public:                                       \
    NEEDLE_DECLARE_OP_BODY(op_name)              \
  };

#define NEEDLE_DECLARE_SCALAR_OP(Class, op_name) \
  class Class final : public ScalarOp {          \
   public:                                       \
    using ScalarOp::ScalarOp;                    \
    NEEDLE_DECLARE_OP_BODY(op_name)              \
  };

#define NEEDLE_DECLARE_UNARY_OP(Class, op_name) \
  class Class final : public TensorOp {         \
   public:                                      \
    int arity() const override { return 1; }    \
    NEEDLE_DECLARE_OP_BODY(op_name)             \
  };

NEEDLE_DECLARE_BINARY_OP(EWiseAdd, "add")
NEEDLE_DECLARE_BINARY_OP(EWiseSub, "subtract")
NEEDLE_DECLARE_BINARY_OP(EWiseMul, "multiply")
NEEDLE_DECLARE_BINARY_OP(EWiseDiv, "divide")
NEEDLE_DECLARE_BINARY_OP(EWisePow, "power")
NEEDLE_DECLARE_BINARY_OP(Maximum, "maximum")

NEEDLE_DECLARE_SCALAR_OP(AddScalar, "add_scalar")
NEEDLE_DECLARE_SCALAR_OP(MulScalar, "mul_scalar")
NEEDLE_DECLARE_SCALAR_OP(DivScalar, "divide_scalar")
NEEDLE_DECLARE_SCALAR_OP(RDivScalar, "rdivide_scalar")  // scalar / a
NEEDLE_DECLARE_SCALAR_OP(PowerScalar, "power_scalar")

NEEDLE_DECLARE_UNARY_OP(Negate, "negate")
NEEDLE_DECLARE_UNARY_OP(Log, "log")
NEEDLE_DECLARE_UNARY_OP(Exp, "exp")
NEEDLE_DECLARE_UNARY_OP(ReLU, "relu")
NEEDLE_DECLARE_UNARY_OP(Tanh, "tanh")
NEEDLE_DECLARE_UNARY_OP(Sigmoid, "sigmoid")
NEEDLE_DECLARE_UNARY_OP(Sqrt, "sqrt")
NEEDLE_DECLARE_UNARY_OP(Abs, "abs")
NEEDLE_DECLARE_UNARY_OP(Erf, "erf")
NEEDLE_DECLARE_UNARY_OP(SiLU, "silu")  // x * sigmoid(x); fused kernels kernel::kSilu(Grad)

// (x, dy) -> dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x): SiLU's adjoint, x its input.
class SiLUGrad final : public TensorOp {
 public:
  int arity() const override { return 2; }
  NEEDLE_DECLARE_OP_BODY("silu_grad")
};

// GELU: approximate "none" is the exact x * Phi(x); "tanh" is PyTorch's approximation
// 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), with that formula's exact gradient.
class GELU final : public TensorOp {
 public:
  explicit GELU(const std::string& approximate = "none");
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("gelu")
  std::string approximate() const { return tanh_approx ? "tanh" : "none"; }
  const bool tanh_approx;
};

// where(condition, a, b): a where condition (any dtype) is nonzero, else b. The condition gets no
// gradient. All three are broadcast together.
class Where final : public TensorOp {
 public:
  int arity() const override { return 3; }
  void prepare(std::vector<NodePtr>& inputs) const override;
  NEEDLE_DECLARE_OP_BODY("where")
};

class AsType final : public TensorOp {
 public:
  explicit AsType(DType dtype) : dtype(dtype) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("astype")
  const DType dtype;
};

class ToDevice final : public TensorOp {
 public:
  explicit ToDevice(Backend& device) : device(&device) {}
  int arity() const override { return 1; }
  NEEDLE_DECLARE_OP_BODY("to")
  Backend* const device;
};

#undef NEEDLE_DECLARE_BINARY_OP
#undef NEEDLE_DECLARE_SCALAR_OP
#undef NEEDLE_DECLARE_UNARY_OP

// --- Functions (the course's names) ---
Tensor add(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, double scalar);
Tensor subtract(const Tensor& a, const Tensor& b);
Tensor multiply(const Tensor& a, const Tensor& b);
Tensor mul_scalar(const Tensor& a, double scalar);
Tensor divide(const Tensor& a, const Tensor& b);
Tensor divide_scalar(const Tensor& a, double scalar);
Tensor rdivide_scalar(const Tensor& a, double scalar);
Tensor power(const Tensor& a, const Tensor& b);
Tensor power_scalar(const Tensor& a, double scalar);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor negate(const Tensor& a);
Tensor log(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor relu(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor erf(const Tensor& a);
Tensor gelu(const Tensor& a, const std::string& approximate = "none");
Tensor silu(const Tensor& a);
Tensor silu_grad(const Tensor& x, const Tensor& dy);
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);
Tensor astype(const Tensor& a, DType dtype);
Tensor to_device(const Tensor& a, Backend& device);

// For Op::prepare: checks the inputs are tensors and casts them to one dtype (float64 when
// mixed) with astype nodes, so that each input's gradient comes back in its own dtype.
void promote_dtypes(const std::string& op, std::vector<NodePtr>& inputs);

}  // namespace needle
