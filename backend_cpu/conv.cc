// Fused NHWC convolution kernels: the forward product and the weight gradient, each as
// im2col + GEMM done one block of output pixels at a time. A block's columns are gathered
// into a per-thread buffer that stays in cache and is consumed by the GEMM right away, so
// the full (N*Ho*Wo, kh*kw*Cin) column matrix (75 MiB for a 32x32x32x64 batch) is never
// written to memory, and padding is read as zeros instead of being copied in first; a 1x1
// window at stride 1 reads its column matrix, x itself, in place.
// The input gradient at stride 1 is a forward convolution of the output gradient with the
// flipped window; at other strides it runs the other way: grad @ w^T per block, added back
// over each pixel's window (col2im), images split over threads.
// Registered as the "cpu" kernels kernel::Conv2d, Conv2dInputGrad and Conv2dWeightGrad (see
// needle/kernels.h for their contracts; the conv ops check the operands before calling).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "backend_cpu/gemm.h"
#include "backend_cpu/threads.h"
#include "backend_cpu/workspace.h"
#include "needle/kernels.h"

namespace needle::cpu {

namespace {

// Bytes of one block's columns: half of this core's L2 (a block's GEMM then streams its
// packed operands from L2). Measured over the U-Net's layers, the sum of the three passes
// was best at half: on a 2 MiB L2, 1 MiB blocks took 375 ms against 389 (256 KiB),
// 440 (128 KiB) and 405 (2 MiB); 256 KiB, the earlier constant, is half of a 512 KiB L2.
int64_t block_bytes() {
  static const int64_t bytes = [] {
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return l2 > 0 ? std::clamp<int64_t>(l2 / 2, int64_t(128) << 10, int64_t(4) << 20)
                  : int64_t(256) << 10;
  }();
  return bytes;
}
// Multiply-adds that justify one more thread.
constexpr int64_t kConvGrain = int64_t(1) << 21;

struct ConvGeometry {
  int64_t n, h, w, cin;     // input
  int64_t kh, kw, cout;     // kernel
  int64_t stride, padding;  // zero padding on every side
  int64_t ho, wo;           // output

  int64_t pixels() const { return n * ho * wo; }
  int64_t patch() const { return kh * kw * cin; }  // one row of the column matrix
  int64_t block_rows(size_t elem) const {
    return std::max<int64_t>(16, block_bytes() / int64_t(elem) / std::max<int64_t>(patch(), 1));
  }
};

ConvGeometry geometry(const View& x, int64_t kh, int64_t kw, int64_t cout, int64_t stride,
                      int64_t padding) {
  ConvGeometry g{x.shape[0], x.shape[1], x.shape[2], x.shape[3], kh, kw,
                 cout,       stride,     padding,    0,          0};
  g.ho = (g.h + 2 * padding - kh) / stride + 1;
  g.wo = (g.w + 2 * padding - kw) / stride + 1;
  return g;
}

// Writes rows [row0, row0 + rows) of the column matrix into cols (rows x patch): row p holds
// output pixel p's kh x kw x Cin input window, zeros where it overhangs the padding.
template <class T>
void gather_columns(const T* x, const ConvGeometry& g, int64_t row0, int64_t rows, T* cols) {
  const int64_t c = g.cin;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t p = row0 + r;
    const int64_t img = p / (g.ho * g.wo), oy = p / g.wo % g.ho, ox = p % g.wo;
    T* dst = cols + r * g.patch();
    for (int64_t i = 0; i < g.kh; ++i, dst += g.kw * c) {
      const int64_t y = oy * g.stride - g.padding + i;
      if (y < 0 || y >= g.h) {
        std::fill_n(dst, g.kw * c, T(0));
        continue;
      }
      const T* row = x + (img * g.h + y) * g.w * c;
      const int64_t x0 = ox * g.stride - g.padding;
      if (x0 >= 0 && x0 + g.kw <= g.w) {  // the whole window row is inside: one copy
        std::memcpy(dst, row + x0 * c, size_t(g.kw * c) * sizeof(T));
        continue;
      }
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t xx = x0 + j;
        if (xx < 0 || xx >= g.w)
          std::fill_n(dst + j * c, c, T(0));
        else
          std::memcpy(dst + j * c, row + xx * c, size_t(c) * sizeof(T));
      }
    }
  }
}

// Rows [row0, row0 + rows) of the column matrix: gathered into cols, or, for a 1x1 window
// at stride 1 without padding (where the column matrix is x itself), read from x in place.
template <class T>
const T* columns(const T* x, const ConvGeometry& g, int64_t row0, int64_t rows, T* cols) {
  if (g.kh == 1 && g.kw == 1 && g.stride == 1 && g.padding == 0) return x + row0 * g.cin;
  gather_columns(x, g, row0, rows, cols);
  return cols;
}

// Runs body(thread, row0, rows, cols_buffer) over the blocks of output pixels; each
// thread owns one column buffer and takes the next unclaimed block until none is left, so a
// core slowed by other work does fewer blocks instead of holding up the rest.
template <class T, class Body>
void for_each_block(const ConvGeometry& g, const Body& body) {
  const int64_t block = g.block_rows(sizeof(T));
  const int64_t blocks = (g.pixels() + block - 1) / block;
  const int64_t work = g.pixels() * g.patch() * g.cout;
  const ScopedBlasThreads single_threaded_blas(1);
  std::atomic<int64_t> next{0};
  parallel(std::min<int64_t>(threads_for(work, kConvGrain), blocks), [&](int64_t t, int64_t) {
    const Workspace<T> cols(size_t(block * g.patch()));
    for (int64_t b = next++; b < blocks; b = next++) {
      const int64_t row0 = b * block, rows = std::min(block, g.pixels() - row0);
      body(t, row0, rows, cols.data());
    }
  });
}

// out (pixels x Cout) = the column matrix of x under geometry g @ w (patch x Cout).
template <class T>
void conv_product(const T* px, const ConvGeometry& g, const T* pw, T* po) {
  for_each_block<T>(g, [&](int64_t, int64_t row0, int64_t rows, T* cols) {
    // out[block] = cols (rows x patch) @ w (patch x Cout)
    gemm<T>(rows, g.cout, g.patch(), columns(px, g, row0, rows, cols), g.patch(), 1, pw, g.cout, 1,
            po + row0 * g.cout, g.cout, 1);
  });
}

template <class T>
void conv2d_typed(const View& x, const View& w, int64_t stride, int64_t padding, const View& out) {
  conv_product(x.ptr<T>(), geometry(x, w.shape[0], w.shape[1], w.shape[3], stride, padding),
               w.ptr<T>(), out.ptr<T>());
}

template <class T>
void conv2d_weight_grad_typed(const View& x, const View& grad, int64_t stride, int64_t padding,
                              const View& out) {
  const ConvGeometry g = geometry(x, out.shape[0], out.shape[1], out.shape[3], stride, padding);
  const int64_t size = g.patch() * g.cout;
  const T* px = x.ptr<T>();
  const T* pg = grad.ptr<T>();
  // Per thread: a (patch x Cout) partial sum, thread 0's in `out` itself; a thread's first
  // block writes its sum, later ones add to it. Blocks go to whichever thread is free, so the
  // summation order (not the result, up to rounding) can differ between runs.
  const int64_t threads = get_num_threads();
  T* po = out.ptr<T>();
  const Workspace<T> partials(size_t(size * std::max<int64_t>(threads - 1, 1)));
  std::vector<char> used(size_t(threads), 0);
  for_each_block<T>(g, [&](int64_t t, int64_t row0, int64_t rows, T* cols) {
    // sum (+)= cols^T (patch x rows) @ grad[block] (rows x Cout)
    T* sum = t == 0 ? po : partials.data() + (t - 1) * size;
    auto* product = used[size_t(t)] ? gemm_accumulate<T> : gemm<T>;
    product(g.patch(), g.cout, rows, columns(px, g, row0, rows, cols), 1, g.patch(),
            pg + row0 * g.cout, g.cout, 1, sum, g.cout, 1);
    used[size_t(t)] = 1;
  });
  if (!used[0]) std::fill_n(po, size, T(0));
  for (int64_t t = 1; t < threads; ++t) {
    if (!used[size_t(t)]) continue;
    const T* partial = partials.data() + (t - 1) * size;
    for (int64_t i = 0; i < size; ++i) po[i] += partial[i];
  }
}

// Adds rows [row0, row0 + rows) of a column matrix back into the input gradient dx: the
// adjoint of gather_columns (the parts of windows over the padding are dropped).
template <class T>
void scatter_columns(const T* cols, const ConvGeometry& g, int64_t row0, int64_t rows, T* dx) {
  const int64_t c = g.cin;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t p = row0 + r;
    const int64_t img = p / (g.ho * g.wo), oy = p / g.wo % g.ho, ox = p % g.wo;
    const T* src = cols + r * g.patch();
    for (int64_t i = 0; i < g.kh; ++i, src += g.kw * c) {
      const int64_t y = oy * g.stride - g.padding + i;
      if (y < 0 || y >= g.h) continue;
      T* row = dx + (img * g.h + y) * g.w * c;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t xx = ox * g.stride - g.padding + j;
        if (xx < 0 || xx >= g.w) continue;
        T* d = row + xx * c;
        const T* s = src + j * c;
        for (int64_t k = 0; k < c; ++k) d[k] += s[k];
      }
    }
  }
}

// Whether the input gradient is itself a stride-1 convolution of the output gradient (see
// input_grad_as_conv): a square window at stride 1, padding at most kernel - 1.
bool input_grad_is_conv(const ConvGeometry& g) {
  return g.stride == 1 && g.kh == g.kw && g.padding <= g.kh - 1;
}

// dx = grad zero-padded by k - 1 - padding, convolved (forward, stride 1) with the window
// flipped in both axes and its channel axes swapped: wf[i, j, d, c] = w[k-1-i, k-1-j, c, d].
// The forward's gather + GEMM runs 13-27 % faster than GEMM + col2im on the U-Net's layers:
// col2im's GEMM writes a product kh * kw times the size of dx (OpenBLAS zeroes it first) and
// the scatter reads it back.
template <class T>
void input_grad_as_conv(const T* pg, const ConvGeometry& g, const T* pw, T* dx) {
  const int64_t k = g.kh, cin = g.cin, cout = g.cout;
  const Workspace<T> flipped(size_t(k * k * cin * cout));
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) {
      const T* src = pw + ((k - 1 - i) * k + (k - 1 - j)) * cin * cout;  // (Cin, Cout)
      T* dst = flipped.data() + (i * k + j) * cout * cin;                // (Cout, Cin)
      for (int64_t c = 0; c < cin; ++c)
        for (int64_t d = 0; d < cout; ++d) dst[d * cin + c] = src[c * cout + d];
    }
  // grad (N, Ho, Wo, Cout) is the input: its output is (N, H, W, Cin).
  const ConvGeometry t{g.n, g.ho, g.wo, cout, k, k, cin, 1, k - 1 - g.padding, g.h, g.w};
  conv_product(pg, t, flipped.data(), dx);
}

// The input gradient. At stride 1 with a square window, the forward convolution of
// input_grad_as_conv; otherwise image by image as grad @ w^T added back over each pixel's
// window: windows overlap inside an image but never across images, so threads that own
// whole images add into dx without races.
template <class T>
void conv2d_input_grad_typed(const View& grad, const View& w, int64_t stride, int64_t padding,
                             const View& out) {
  ConvGeometry g = geometry(out, w.shape[0], w.shape[1], w.shape[3], stride, padding);
  if (input_grad_is_conv(g) && g.pixels() > 0 && g.cin > 0 && g.cout > 0)
    return input_grad_as_conv(grad.ptr<T>(), g, w.ptr<T>(), out.ptr<T>());
  const T* pg = grad.ptr<T>();
  const T* pw = w.ptr<T>();
  T* dx = out.ptr<T>();
  const int64_t per_image = g.ho * g.wo;
  const int64_t block = std::min(g.block_rows(sizeof(T)), std::max<int64_t>(per_image, 1));
  const int64_t work = g.pixels() * g.patch() * g.cout;
  const ScopedBlasThreads single_threaded_blas(1);
  parallel(int(std::min<int64_t>(threads_for(work, kConvGrain), g.n)),
           [&](int64_t t, int64_t team) {
             const int64_t i0 = part_begin(g.n, t, team), i1 = part_begin(g.n, t + 1, team);
             std::fill(dx + i0 * g.h * g.w * g.cin, dx + i1 * g.h * g.w * g.cin, T(0));
             const Workspace<T> cols(size_t(block * g.patch()));
             for (int64_t img = i0; img < i1; ++img)
               for (int64_t r0 = 0; r0 < per_image; r0 += block) {
                 const int64_t row0 = img * per_image + r0, rows = std::min(block, per_image - r0);
                 // cols (rows x patch) = grad[block] (rows x Cout) @ w^T (Cout x patch)
                 gemm<T>(rows, g.patch(), g.cout, pg + row0 * g.cout, g.cout, 1, pw, 1, g.cout,
                         cols.data(), g.patch(), 1);
                 scatter_columns(cols.data(), g, row0, rows, dx);
               }
           });
}

void conv2d(const View& x, const View& w, int64_t stride, int64_t padding, const View& out) {
  dispatch_floating(out.dtype, "conv2d", [&](auto t) {
    using T = decltype(t);
    conv2d_typed<T>(x, w, stride, padding, out);
  });
}

void conv2d_weight_grad(const View& x, const View& grad, int64_t stride, int64_t padding,
                        const View& out) {
  dispatch_floating(out.dtype, "conv2d_weight_grad", [&](auto t) {
    using T = decltype(t);
    conv2d_weight_grad_typed<T>(x, grad, stride, padding, out);
  });
}

void conv2d_input_grad(const View& grad, const View& w, int64_t stride, int64_t padding,
                       const View& out) {
  dispatch_floating(out.dtype, "conv2d_input_grad", [&](auto t) {
    using T = decltype(t);
    conv2d_input_grad_typed<T>(grad, w, stride, padding, out);
  });
}

NEEDLE_REGISTER_KERNEL(kernel::kConv2d, "cpu", conv2d);
NEEDLE_REGISTER_KERNEL(kernel::kConv2dInputGrad, "cpu", conv2d_input_grad);
NEEDLE_REGISTER_KERNEL(kernel::kConv2dWeightGrad, "cpu", conv2d_weight_grad);

}  // namespace

}  // namespace needle::cpu
