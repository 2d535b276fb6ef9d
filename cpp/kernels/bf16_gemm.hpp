// GEMM with bfloat16 inputs and float32 accumulation, for autocast (python/fastnn/amp.py):
// C (+)= op(A)·op(B), row-major, A (n, k) or stored (k, n) when trans_a, B (k, m) or stored (m, k) when trans_b,
// C (n, m) float32. Every input is rounded to bf16 (round to nearest even, NaN kept quiet), every product is
// exact in float32 and summed in float32.
//
// Two paths give the same numbers up to the order of the float32 sums:
// - dot products (`vdpbf16ps`, AVX512_BF16): only in the avx512 library, and only when the CPU has the
//   feature (checked with CPUID at run time: the avx512 library also runs on Skylake-X and Ice Lake, which
//   lack it). The operands become pairs of bf16 along k in one 32-bit word; B is packed into panels of 32
//   columns, A is read in place by broadcasts; a register-blocked micro-kernel keeps an 8×32 tile of C in 16
//   vector registers.
// - fallback (any CPU, or forced by the caller): the inputs rounded to bf16 values held in float32, then the
//   ordinary float32 GEMM (kernels/batched_gemm.hpp).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/batched_gemm.hpp"
#include "kernels/entry.hpp"
#include "kernels/parallel.hpp"
#include "kernels/scratch.hpp"

#if defined(__AVX512F__) && defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define FASTNN_BF16_DOT 1
#else
#define FASTNN_BF16_DOT 0
#endif

namespace fastnn {

namespace bf16 {

// The bf16 nearest to x (ties to even) in the top 16 bits of a float's bits, the low 16 bits zero. A NaN stays
// a (quiet) NaN; rounding never turns a finite value past the largest bf16 into anything but infinity.
inline std::uint32_t round_bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  const std::uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return (nan ? (u | 0x00400000u) : rounded) & 0xffff0000u;
}

template <typename T>
T round(T x) {
  const std::uint32_t r = round_bits(static_cast<float>(x));
  float f;
  std::memcpy(&f, &r, sizeof f);
  return static_cast<T>(f);
}

// One 32-bit word holding two bf16: `even` (the lower k index) in the low half, as vdpbf16ps reads them.
inline std::uint32_t pair(float even, float odd) { return (round_bits(even) >> 16) | round_bits(odd); }

#if FASTNN_BF16_DOT
constexpr index_t kMr = 8;    // rows of C per micro-tile
constexpr index_t kNr = 32;   // columns of C per micro-tile (two vectors)
constexpr index_t kKc = 128;  // pairs of k per block: a B micro-panel of 16 KB stays in L1

inline bool cpu_has_dot() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  return (a >> 5) & 1u;  // CPUID.(EAX=7, ECX=1):EAX bit 5 = AVX512_BF16
}

// A as pairs along k: row r's pair p at a[r * rs + p * ps]; rows padded with zeros to a multiple of kMr.
// trans_a = false: A (n, k) -> (n_pad, kp), rs = kp, ps = 1. trans_a = true: A stored (k, n) -> (kp, n_pad).
inline void pack_a(const float* a, bool trans_a, index_t n, index_t k, index_t n_pad, index_t kp,
                   std::uint32_t* out) {
  if (!trans_a) {
    for_each_slice(n_pad, kMr, n_pad * kp * 8, kParallelMinMacs, [&](index_t begin, index_t count) {
      for (index_t r = begin; r < begin + count; ++r) {
        std::uint32_t* o = out + r * kp;
        if (r >= n) {
          std::fill(o, o + kp, 0u);
          continue;
        }
        const float* row = a + r * k;
        const index_t full = k / 2;
        for (index_t p = 0; p < full; ++p) o[p] = pair(row[2 * p], row[2 * p + 1]);
        if (full < kp) o[full] = pair(row[k - 1], 0.0f);
      }
    });
    return;
  }
  for_each_slice(kp, 1, n_pad * kp * 8, kParallelMinMacs, [&](index_t begin, index_t count) {
    for (index_t p = begin; p < begin + count; ++p) {
      std::uint32_t* o = out + p * n_pad;
      const float* even = a + 2 * p * n;
      const float* odd = 2 * p + 1 < k ? even + n : nullptr;
      if (odd)
        for (index_t i = 0; i < n; ++i) o[i] = pair(even[i], odd[i]);
      else
        for (index_t i = 0; i < n; ++i) o[i] = pair(even[i], 0.0f);
      std::fill(o + n, o + n_pad, 0u);
    }
  });
}

// B as panels of kNr columns: panel j holds, for each pair p, kNr words (columns past m are zero).
inline void pack_b(const float* b, bool trans_b, index_t k, index_t m, index_t kp, std::uint32_t* out) {
  const index_t panels = (m + kNr - 1) / kNr;
  for_each_slice(panels, 1, kp * m * 8, kParallelMinMacs, [&](index_t begin, index_t count) {
    for (index_t j = begin; j < begin + count; ++j) {
      std::uint32_t* panel = out + j * kp * kNr;
      const index_t c0 = j * kNr, cols = std::min(kNr, m - c0);
      if (!trans_b) {  // B (k, m): pair p from rows 2p and 2p + 1
        for (index_t p = 0; p < kp; ++p) {
          std::uint32_t* o = panel + p * kNr;
          const float* even = b + 2 * p * m + c0;
          if (2 * p + 1 < k) {
            const float* odd = even + m;
            for (index_t c = 0; c < cols; ++c) o[c] = pair(even[c], odd[c]);
          } else {
            for (index_t c = 0; c < cols; ++c) o[c] = pair(even[c], 0.0f);
          }
          std::fill(o + cols, o + kNr, 0u);
        }
      } else {  // B stored (m, k): column c's pair p from its row's elements 2p and 2p + 1
        const index_t full = k / 2;
        for (index_t c = 0; c < kNr; ++c) {
          if (c >= cols) {
            for (index_t p = 0; p < kp; ++p) panel[p * kNr + c] = 0u;
            continue;
          }
          const float* row = b + (c0 + c) * k;
          for (index_t p = 0; p < full; ++p) panel[p * kNr + c] = pair(row[2 * p], row[2 * p + 1]);
          if (full < kp) panel[full * kNr + c] = pair(row[k - 1], 0.0f);
        }
      }
    }
  });
}

// C[0:rows, 0:cols] (+)= the kMr×kNr tile of A's pairs [a, rows at rs, pairs at ps) times B's micro-panel.
template <bool kRowsContiguous>
__attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"))) inline void micro_kernel(
    const std::uint32_t* a, index_t rs, index_t ps, const std::uint32_t* bp, index_t pairs, float* c,
    index_t ldc, index_t rows, index_t cols, bool add) {
  __m512 acc[kMr][2];
  for (int r = 0; r < kMr; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (index_t p = 0; p < pairs; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + p * kNr);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + p * kNr + 16);
    const std::uint32_t* ap = a + p * ps;
#pragma GCC unroll 8
    for (int r = 0; r < kMr; ++r) {
      const std::uint32_t w = kRowsContiguous ? ap[r] : ap[r * rs];
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(w));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
    }
  }
  const __mmask16 m0 = cols >= 16 ? __mmask16(0xffff) : __mmask16((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? __mmask16(0xffff) : cols <= 16 ? __mmask16(0) : __mmask16((1u << (cols - 16)) - 1);
  for (int r = 0; r < kMr; ++r) {
    if (r >= rows) break;
    float* cr = c + r * ldc;
    __m512 v0 = acc[r][0], v1 = acc[r][1];
    if (add) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}

inline void gemm_dot(const float* a, const float* b, float* c, index_t n, index_t k, index_t m, bool trans_a,
                     bool trans_b, bool accumulate) {
  const index_t kp = (k + 1) / 2, n_pad = (n + kMr - 1) / kMr * kMr, panels = (m + kNr - 1) / kNr;
  // Packed operands live in the calling thread's scratch; the team reads them.
  std::uint32_t* pa = detail::scratch<std::uint32_t>(0, n_pad * kp);
  std::uint32_t* pb = detail::scratch<std::uint32_t>(1, panels * kp * kNr);
  pack_a(a, trans_a, n, k, n_pad, kp, pa);
  pack_b(b, trans_b, k, m, kp, pb);
  const index_t rs = trans_a ? 1 : kp, ps = trans_a ? n_pad : 1;
  const index_t tiles = n_pad / kMr;
  // Tiles (row block i, panel j) for panels [j0, j1) and row blocks [i0, i1), B's micro-panel reused from L1.
  auto run = [&](index_t j0, index_t j1, index_t i0, index_t i1) {
    for (index_t j = j0; j < j1; ++j) {
      const index_t cols = std::min(kNr, m - j * kNr);
      for (index_t p0 = 0; p0 < kp; p0 += kKc) {
        const index_t pairs = std::min(kKc, kp - p0);
        const bool add = accumulate || p0 > 0;
        const std::uint32_t* bp = pb + j * kp * kNr + p0 * kNr;
        for (index_t i = i0; i < i1; ++i) {
          const std::uint32_t* ap = pa + i * kMr * rs + p0 * ps;
          float* ct = c + i * kMr * m + j * kNr;
          const index_t rows = std::min(kMr, n - i * kMr);
          if (trans_a)
            micro_kernel<true>(ap, rs, ps, bp, pairs, ct, m, rows, cols, add);
          else
            micro_kernel<false>(ap, rs, ps, bp, pairs, ct, m, rows, cols, add);
        }
      }
    }
  };
  const index_t macs = n * k * m;
  if (panels >= 2 * runtime::max_threads() || panels >= tiles) {
    for_each_slice(panels, 1, macs, kParallelMinMacs,
                   [&](index_t begin, index_t count) { run(begin, begin + count, 0, tiles); });
  } else {
    for_each_slice(tiles, 1, macs, kParallelMinMacs,
                   [&](index_t begin, index_t count) { run(0, panels, begin, begin + count); });
  }
}
#endif  // FASTNN_BF16_DOT

}  // namespace bf16

// Whether this library runs bf16_gemm with dot products on this CPU (a template only so that it fits the entry
// lists; T is unused).
template <typename T>
bool bf16_dot_supported() {
#if FASTNN_BF16_DOT
  static const bool has = bf16::cpu_has_dot();
  return has;
#else
  return false;
#endif
}

// C (+)= op(A)·op(B) in bf16 with float32 sums (see the top of this file). use_dot = false forces the fallback;
// float64 operands always take it (their inputs are rounded to bf16 values all the same).
template <typename T>
void bf16_gemm(const T* a, const T* b, T* c, index_t n, index_t k, index_t m, bool trans_a, bool trans_b,
               bool accumulate, bool use_dot) {
  if (n == 0 || m == 0) return;
  if (k == 0) {
    if (!accumulate) std::fill(c, c + n * m, T(0));
    return;
  }
#if FASTNN_BF16_DOT
  if constexpr (std::is_same_v<T, float>) {
    if (use_dot && bf16_dot_supported<T>()) {
      bf16::gemm_dot(a, b, c, n, k, m, trans_a, trans_b, accumulate);
      return;
    }
  }
#endif
  (void)use_dot;
  T* ra = detail::scratch<T>(0, n * k);
  T* rb = detail::scratch<T>(1, k * m);
  parallel_for(n * k, n * k >= kParallelMinElements, [&](index_t i) { ra[i] = bf16::round(a[i]); });
  parallel_for(k * m, k * m >= kParallelMinElements, [&](index_t i) { rb[i] = bf16::round(b[i]); });
  batched_gemm(ra, rb, c, index_t(1), n, k, m, trans_a, trans_b, index_t(0), index_t(0), accumulate);
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_BF16_GEMM_ENTRIES(X) X(bf16_gemm) X(bf16_dot_supported)
FASTNN_DECLARE_ENTRIES(FASTNN_BF16_GEMM_ENTRIES)

}  // namespace fastnn
