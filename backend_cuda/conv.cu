// Fused NHWC convolution kernels on the GPU: the forward product and the weight gradient,
// each as im2col (a gather kernel writing each output pixel's kh x kw x Cin window, zeros
// where it overhangs the padding, into a scratch column matrix) followed by one cuBLAS GEMM;
// and the input gradient, the same in reverse: one GEMM writes every output pixel's window
// gradient into the column matrix, and col2im sums each input element's share of the
// windows that hold it (a gather per input element: no atomics, so results do not depend
// on thread timing). The column matrix is built a chunk of pixel rows (for the input
// gradient, of whole images) at a time, so its scratch buffer stays under kColsBudget
// however large the batch; a 1x1 kernel at stride 1 without padding needs no columns at all
// (x already is the column matrix). Registered as the "cuda" kernels kernel::Conv2d,
// kernel::Conv2dWeightGrad and kernel::Conv2dInputGrad (contracts in needle/kernels.h: every
// view is contiguous, of one dtype, and the conv ops have checked the shapes).
#include <algorithm>
#include <climits>

#include "backend_cuda/cublas_util.cuh"
#include "backend_cuda/cuda_common.cuh"
#include "needle/kernels.h"

namespace needle::cuda {
namespace {

// Most bytes of the scratch column matrix; larger products run in chunks of pixel rows.
constexpr int64_t kColsBudget = int64_t(256) << 20;

struct ConvGeometry {
  int64_t n, h, w, cin;     // input
  int64_t kh, kw, cout;     // kernel
  int64_t stride, padding;  // zero padding on every side
  int64_t ho, wo;           // output
  int64_t pixels;           // n * ho * wo: rows of the column matrix
  int64_t patch;            // kh * kw * cin: columns of the column matrix
};

// x (N, H, W, Cin), the kernel's (kh, kw, ., Cout) and the output's (., Ho, Wo, .).
ConvGeometry geometry(const View& x, const View& kernel, const View& output, int64_t stride,
                      int64_t padding) {
  ConvGeometry g;
  g.n = x.shape[0], g.h = x.shape[1], g.w = x.shape[2], g.cin = x.shape[3];
  g.kh = kernel.shape[0], g.kw = kernel.shape[1], g.cout = kernel.shape[3];
  g.stride = stride, g.padding = padding;
  g.ho = output.shape[1], g.wo = output.shape[2];
  g.pixels = g.n * g.ho * g.wo;
  g.patch = g.kh * g.kw * g.cin;
  return g;
}

// Whether the column matrix is x itself: a 1x1 window at stride 1 without padding.
bool columns_are_input(const ConvGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.stride == 1 && g.padding == 0;
}

// cuBLAS takes int sizes and leading dimensions.
void check_gemm_sizes(const char* op, const ConvGeometry& g) {
  if (g.patch > INT_MAX || g.cout > INT_MAX)
    fail<ValueError>("[", op, "] a kernel of ", g.patch, " x ", g.cout,
                     " entries exceeds cuBLAS's int sizes on the GPU");
}

// Rows of the column matrix per chunk: as many as fit kColsBudget (at least one), at most
// INT_MAX (a GEMM dimension).
int64_t chunk_rows(const ConvGeometry& g, size_t elem) {
  int64_t rows = g.pixels;
  if (!columns_are_input(g))
    rows = std::min(rows, std::max<int64_t>(1, kColsBudget / (g.patch * int64_t(elem))));
  return std::min<int64_t>(rows, INT_MAX);
}

// A device scratch buffer from the cuda backend's allocator, freed when it goes out of scope
// (on the error path too). The free waits for the kernels that still read it: the backend
// frees with cudaFree, which synchronizes the device first.
class Scratch {
 public:
  explicit Scratch(size_t bytes) : backend_(find_backend("cuda")) {
    if (bytes) ptr_ = backend_.allocate(bytes);
  }
  ~Scratch() { backend_.deallocate(ptr_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* get() const {
    return static_cast<T*>(ptr_);
  }

 private:
  Backend& backend_;
  void* ptr_ = nullptr;
};

// cols (rows x patch, row-major) = rows [row0, row0 + rows) of the column matrix: row r holds
// output pixel p = row0 + r's window, column q = (i * kw + j) * cin + c its entry
// xpad[img, oy * stride + i, ox * stride + j, c], 0 in the padding. One thread per entry,
// so neighbouring threads read neighbouring channels and write neighbouring columns.
template <class T>
__global__ void im2col_kernel(const T* __restrict__ x, ConvGeometry g, int64_t row0, int64_t rows,
                              T* __restrict__ cols) {
  const int64_t total = rows * g.patch;
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t p = row0 + e / g.patch, q = e % g.patch;
    const int64_t ox = p % g.wo, oy = p / g.wo % g.ho, img = p / (g.wo * g.ho);
    const int64_t c = q % g.cin, j = q / g.cin % g.kw, i = q / (g.cin * g.kw);
    const int64_t y = oy * g.stride - g.padding + i, xx = ox * g.stride - g.padding + j;
    const bool inside = y >= 0 && y < g.h && xx >= 0 && xx < g.w;
    cols[e] = inside ? x[((img * g.h + y) * g.w + xx) * g.cin + c] : T(0);
  }
}

// The chunk's column matrix: x's own rows for a 1x1 kernel, else gathered into `scratch`.
template <class T>
const T* columns(const char* op, const T* x, const ConvGeometry& g, int64_t row0, int64_t rows,
                 T* scratch) {
  if (columns_are_input(g)) return x + row0 * g.patch;
  const int64_t total = rows * g.patch;
  im2col_kernel<T><<<grid_for(total), kThreads>>>(x, g, row0, rows, scratch);
  check_launch(op);
  return scratch;
}

// Sets an output to zeros (an empty sum); all-zero bytes are 0.0 in float32 and float64.
void zero(const char* op, void* data, int64_t count, size_t elem) {
  if (count > 0) NEEDLE_CUDA_CHECK(op, cudaMemset(data, 0, size_t(count) * elem));
}

template <class T>
void conv2d_typed(const View& x, const View& w, int64_t stride, int64_t padding, const View& out) {
  const char* op = kernel::kConv2d;
  const ConvGeometry g = geometry(x, w, out, stride, padding);
  if (g.pixels == 0 || g.cout == 0) return;  // an empty output
  T* po = out.ptr<T>();
  if (g.patch == 0) return zero(op, po, g.pixels * g.cout, sizeof(T));  // Cin = 0
  check_gemm_sizes(op, g);
  const int64_t chunk = chunk_rows(g, sizeof(T));
  Scratch scratch(columns_are_input(g) ? 0 : size_t(chunk * g.patch) * sizeof(T));
  const T* px = x.ptr<T>();
  const T* pw = w.ptr<T>();
  const T alpha = 1, beta = 0;
  cublasHandle_t handle = cublas_handle(op);
  for (int64_t row0 = 0; row0 < g.pixels; row0 += chunk) {
    const int64_t rows = std::min(chunk, g.pixels - row0);
    const T* cols = columns(op, px, g, row0, rows, scratch.get<T>());
    // Row-major out[chunk] (rows x Cout) = cols (rows x patch) @ w (patch x Cout). cuBLAS is
    // column-major, where a row-major R x C array with leading dimension C reads as its
    // C x R transpose; so it computes out^T (Cout x rows, ld Cout) = w^T (Cout x patch,
    // ld Cout) @ cols^T (patch x rows, ld patch), both operands untransposed (N, N).
    NEEDLE_CUBLAS_CHECK(
        op, gemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, int(g.cout), int(rows), int(g.patch), &alpha, pw,
                 int(g.cout), cols, int(g.patch), &beta, po + row0 * g.cout, int(g.cout)));
  }
}

template <class T>
void conv2d_weight_grad_typed(const View& x, const View& grad, int64_t stride, int64_t padding,
                              const View& out) {
  const char* op = kernel::kConv2dWeightGrad;
  const ConvGeometry g = geometry(x, out, grad, stride, padding);
  if (g.patch == 0 || g.cout == 0) return;  // an empty output
  T* po = out.ptr<T>();
  if (g.pixels == 0) return zero(op, po, g.patch * g.cout, sizeof(T));  // no pixels to sum
  check_gemm_sizes(op, g);
  const int64_t chunk = chunk_rows(g, sizeof(T));
  Scratch scratch(columns_are_input(g) ? 0 : size_t(chunk * g.patch) * sizeof(T));
  const T* px = x.ptr<T>();
  const T* pg = grad.ptr<T>();
  const T alpha = 1, zero_beta = 0, one_beta = 1;
  cublasHandle_t handle = cublas_handle(op);
  for (int64_t row0 = 0; row0 < g.pixels; row0 += chunk) {
    const int64_t rows = std::min(chunk, g.pixels - row0);
    const T* cols = columns(op, px, g, row0, rows, scratch.get<T>());
    // Row-major out (patch x Cout) += cols^T (patch x rows) @ grad[chunk] (rows x Cout). In
    // cuBLAS's column-major terms: out^T (Cout x patch, ld Cout) += grad^T (Cout x rows) @
    // cols (rows x patch). grad's row-major chunk (ld Cout) already reads as grad^T (op N);
    // the row-major cols (ld patch) reads as cols^T (patch x rows), so it takes op T. The
    // first chunk overwrites out (beta 0: out's prior contents are never read), later ones
    // accumulate (beta 1).
    NEEDLE_CUBLAS_CHECK(
        op, gemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, int(g.cout), int(g.patch), int(rows), &alpha,
                 pg + row0 * g.cout, int(g.cout), cols, int(g.patch),
                 row0 == 0 ? &zero_beta : &one_beta, po, int(g.cout)));
  }
}

// dx for images [img0, img0 + images) from their column matrix `cols` (row r = pixel
// img0 * Ho * Wo + r's window gradient, laid out as im2col's): dx[img, y, x, c] = the sum over
// the windows (oy, ox) covering (y, x), at window offset (i, j) = (y + padding - oy * stride,
// x + padding - ox * stride), of that window's entry (i, j, c). One thread per input element.
template <class T>
__global__ void col2im_kernel(const T* __restrict__ cols, ConvGeometry g, int64_t img0,
                              int64_t images, T* __restrict__ dx) {
  const int64_t total = images * g.h * g.w * g.cin;
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t c = e % g.cin, xx = e / g.cin % g.w, y = e / (g.cin * g.w) % g.h;
    const int64_t img = e / (g.cin * g.w * g.h);  // within the chunk
    T sum = 0;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t ty = y + g.padding - i;  // oy * stride for the window at offset i
      if (ty < 0 || ty % g.stride != 0 || ty / g.stride >= g.ho) continue;
      const int64_t row_y = (img * g.ho + ty / g.stride) * g.wo;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t tx = xx + g.padding - j;
        if (tx < 0 || tx % g.stride != 0 || tx / g.stride >= g.wo) continue;
        sum += cols[(row_y + tx / g.stride) * g.patch + (i * g.kw + j) * g.cin + c];
      }
    }
    dx[img0 * g.h * g.w * g.cin + e] = sum;
  }
}

template <class T>
void conv2d_input_grad_typed(const View& grad, const View& w, int64_t stride, int64_t padding,
                             const View& out) {
  const char* op = kernel::kConv2dInputGrad;
  const ConvGeometry g = geometry(out, w, grad, stride, padding);
  if (g.n * g.h * g.w * g.cin == 0) return;  // an empty output
  T* dx = out.ptr<T>();
  if (g.pixels == 0 || g.cout == 0) return zero(op, dx, g.n * g.h * g.w * g.cin, sizeof(T));
  check_gemm_sizes(op, g);
  const T* pg = grad.ptr<T>();
  const T* pw = w.ptr<T>();
  const T alpha = 1, beta = 0;
  cublasHandle_t handle = cublas_handle(op);
  // Whole images per chunk (windows never cross images), as many as fit the budget (one at
  // least; for a 1x1 kernel the columns are dx itself), their rows at most INT_MAX.
  const int64_t per_image = g.ho * g.wo;
  const bool direct = columns_are_input(g);
  const int64_t image_bytes = per_image * g.patch * int64_t(sizeof(T));
  int64_t chunk = direct ? g.n : kColsBudget / std::max<int64_t>(image_bytes, 1);
  chunk = std::max<int64_t>(1, std::min({chunk, g.n, INT_MAX / per_image}));
  Scratch scratch(direct ? 0 : size_t(chunk * per_image * g.patch) * sizeof(T));
  for (int64_t img0 = 0; img0 < g.n; img0 += chunk) {
    const int64_t images = std::min(chunk, g.n - img0), rows = images * per_image;
    T* cols = direct ? dx + img0 * per_image * g.patch : scratch.get<T>();
    // Row-major cols (rows x patch) = grad[chunk] (rows x Cout) @ w^T (Cout x patch), w being
    // patch x Cout row-major. Column-major: cols^T (patch x rows, ld patch) = op T of w's
    // Cout x patch reading (ld Cout) @ grad^T (Cout x rows, ld Cout).
    NEEDLE_CUBLAS_CHECK(
        op, gemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(g.patch), int(rows), int(g.cout), &alpha,
                 pw, int(g.cout), pg + img0 * per_image * g.cout, int(g.cout), &beta, cols,
                 int(g.patch)));
    if (direct) continue;
    const int64_t total = images * g.h * g.w * g.cin;
    col2im_kernel<T><<<grid_for(total), kThreads>>>(cols, g, img0, images, dx);
    check_launch(op);
  }
}

void conv2d(const View& x, const View& w, int64_t stride, int64_t padding, const View& out) {
  dispatch_floating(out.dtype, kernel::kConv2d, [&](auto t) {
    using T = decltype(t);
    conv2d_typed<T>(x, w, stride, padding, out);
  });
}

void conv2d_weight_grad(const View& x, const View& grad, int64_t stride, int64_t padding,
                        const View& out) {
  dispatch_floating(out.dtype, kernel::kConv2dWeightGrad, [&](auto t) {
    using T = decltype(t);
    conv2d_weight_grad_typed<T>(x, grad, stride, padding, out);
  });
}

void conv2d_input_grad(const View& grad, const View& w, int64_t stride, int64_t padding,
                       const View& out) {
  dispatch_floating(out.dtype, kernel::kConv2dInputGrad, [&](auto t) {
    using T = decltype(t);
    conv2d_input_grad_typed<T>(grad, w, stride, padding, out);
  });
}

NEEDLE_REGISTER_KERNEL(kernel::kConv2d, "cuda", conv2d);
NEEDLE_REGISTER_KERNEL(kernel::kConv2dInputGrad, "cuda", conv2d_input_grad);
NEEDLE_REGISTER_KERNEL(kernel::kConv2dWeightGrad, "cuda", conv2d_weight_grad);

}  // namespace
}  // namespace needle::cuda
