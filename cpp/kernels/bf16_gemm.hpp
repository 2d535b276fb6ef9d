// GEMM with bfloat16 inputs and float32 accumulation, for autocast (python/fastnn/amp.py):
// C (+)= op(A)·op(B), row-major, A (n, k) or stored (k, n) when trans_a, B (k, m) or stored (m, k) when trans_b,
// C (n, m) float32. Every input is rounded to bf16 (round to nearest even, NaN kept quiet), every product is
// exact in float32 and summed in float32. Optionally (Linear's forward under autocast) a bias per column of C
// is added in the same pass that stores C, and A is checked for NaN/inf while it is packed: one pass over the
// operands instead of three (a check, a bias fill, the product).
//
// Two paths give the same numbers up to the order of the float32 sums:
// - dot products (`vdpbf16ps`, AVX512_BF16): only in the avx512 library, and only when the CPU has the
//   feature (checked with CPUID at run time: the avx512 library also runs on Skylake-X and Ice Lake, which
//   lack it). The operands become pairs of bf16 along k in one 32-bit word; B is packed into panels of 32
//   columns, A into tiles of 8 rows that broadcasts read; a register-blocked micro-kernel keeps an 8×32 tile
//   of C in 16 vector registers.
// - fallback (any CPU, or forced by the caller): the inputs rounded to bf16 values held in float32, then the
//   ordinary float32 GEMM (kernels/batched_gemm.hpp).
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>

#include "kernels/batched_gemm.hpp"
#include "kernels/checks.hpp"
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

// Vector forms of round_bits and pair (the avx512 library is compiled for AVX-512 F/BW): the same bits.
inline __m512i round_bits16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  return _mm512_mask_or_epi32(rounded, nan, u, _mm512_set1_epi32(0x00400000));  // top halves are the bf16
}

// 16 pairs from two vectors of 16 values along a column (even rows, odd rows).
inline __m512i pairs_vertical16(__m512 even, __m512 odd) {
  return _mm512_mask_blend_epi16(0xAAAAAAAAu, _mm512_srli_epi32(round_bits16(even), 16), round_bits16(odd));
}

// 16 pairs from 32 consecutive values of a row (lo: values 0-15, hi: 16-31): the top halves, in order.
inline __m512i pairs_horizontal16(__m512 lo, __m512 hi) {
  const __m512i tops = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29,
                                        27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  return _mm512_permutex2var_epi16(round_bits16(lo), tops, round_bits16(hi));
}

// Lanes of x that are NaN or ±inf (vfpclassps: quiet NaN, +inf, -inf, signalling NaN).
inline __mmask16 not_finite(__m512 x) { return _mm512_fpclass_ps_mask(x, 0x01 | 0x08 | 0x10 | 0x80); }

inline __mmask16 first(index_t count) {  // the first `count` lanes (none for count <= 0)
  return count >= 16 ? __mmask16(0xffff) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

// A row of k values -> kp pairs (the last one's odd half zero when k is odd).
inline void row_pairs(const float* row, index_t k, index_t kp, std::uint32_t* out) {
  for (index_t p = 0; p < kp; p += 16) {
    const index_t left = k - 2 * p;  // values of the row from 2p on
    const __m512 lo = _mm512_maskz_loadu_ps(first(left), row + 2 * p);
    const __m512 hi = _mm512_maskz_loadu_ps(first(left - 16), row + 2 * p + 16);
    _mm512_mask_storeu_epi32(out + p, first(kp - p), pairs_horizontal16(lo, hi));
  }
}

// Rows `even` and `odd` (nullptr: zeros) of `count` values -> count pairs; lanes holding NaN/inf are or-ed
// into *bad.
inline void column_pairs(const float* even, const float* odd, index_t count, std::uint32_t* out,
                         __mmask16* bad) {
  for (index_t i = 0; i < count; i += 16) {
    const __mmask16 mask = first(count - i);
    const __m512 e = _mm512_maskz_loadu_ps(mask, even + i);
    const __m512 o = odd ? _mm512_maskz_loadu_ps(mask, odd + i) : _mm512_setzero_ps();
    *bad |= not_finite(e) | not_finite(o);
    _mm512_mask_storeu_epi32(out + i, mask, pairs_vertical16(e, o));
  }
}

// v[i] holds element j of row i -> v[j] holds element i of row j (a 16×16 transpose of 32-bit words).
inline void transpose16(__m512i v[16]) {
  __m512i a[16], b[16];
  for (int i = 0; i < 8; ++i) {  // within 128-bit lanes: pairs of rows interleaved by words
    a[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
  }
  for (int g = 0; g < 4; ++g) {  // b[4g + j], lane L: rows 4g..4g+3 at column 4L + j
    b[4 * g + 0] = _mm512_unpacklo_epi64(a[4 * g], a[4 * g + 2]);
    b[4 * g + 1] = _mm512_unpackhi_epi64(a[4 * g], a[4 * g + 2]);
    b[4 * g + 2] = _mm512_unpacklo_epi64(a[4 * g + 1], a[4 * g + 3]);
    b[4 * g + 3] = _mm512_unpackhi_epi64(a[4 * g + 1], a[4 * g + 3]);
  }
  for (int j = 0; j < 4; ++j) {  // column 4L + j gathers lane L of b[j], b[4 + j], b[8 + j], b[12 + j]
    const __m512i c0 = _mm512_shuffle_i32x4(b[j], b[4 + j], 0x88), c1 = _mm512_shuffle_i32x4(b[8 + j], b[12 + j], 0x88);
    const __m512i d0 = _mm512_shuffle_i32x4(b[j], b[4 + j], 0xdd), d1 = _mm512_shuffle_i32x4(b[8 + j], b[12 + j], 0xdd);
    v[j] = _mm512_shuffle_i32x4(c0, c1, 0x88);
    v[8 + j] = _mm512_shuffle_i32x4(c0, c1, 0xdd);
    v[4 + j] = _mm512_shuffle_i32x4(d0, d1, 0x88);
    v[12 + j] = _mm512_shuffle_i32x4(d0, d1, 0xdd);
  }
}

// Rows [r0, r0 + rows) of A as pairs along k, in tiles of kMr rows (rows a multiple of kMr; those past n are
// zeros): tile t at out + t * kp * kMr holds, for each pair p, the kMr rows' words side by side, so the
// micro-kernel's broadcasts read one cache line. A is (n, k), or stored (k, n) when trans_a. Returns whether
// every value packed is finite.
inline bool pack_a(const float* a, bool trans_a, index_t n, index_t k, index_t kp, index_t r0, index_t rows,
                   std::uint32_t* out) {
  __mmask16 bad = 0;
  const index_t valid = std::max<index_t>(0, std::min(rows, n - r0));
  if (trans_a) {  // pair p of a tile from rows 2p and 2p + 1 of the stored matrix, read row by row
    for (index_t p = 0; p < kp; ++p) {
      const float* even = a + 2 * p * n + r0;
      const float* odd = 2 * p + 1 < k ? even + n : nullptr;
      for (index_t t = 0; t < rows; t += kMr) {
        std::uint32_t* o = out + t / kMr * kp * kMr + p * kMr;
        const index_t count = std::max<index_t>(0, std::min(kMr, valid - t));
        column_pairs(even + t, odd ? odd + t : nullptr, count, o, &bad);
        std::fill(o + count, o + kMr, 0u);
      }
    }
    return bad == 0;
  }
  // A (n, k): 16 rows' pairs p0..p0+15 (vectors along p), transposed to vectors along rows: two tiles' words.
  for (index_t t0 = 0; t0 < rows; t0 += 2 * kMr) {
    for (index_t p0 = 0; p0 < kp; p0 += 16) {
      const index_t left = k - 2 * p0;
      __m512i v[16];
      for (int i = 0; i < 16; ++i) {
        if (t0 + i >= valid) {
          v[i] = _mm512_setzero_si512();
          continue;
        }
        const float* row = a + (r0 + t0 + i) * k + 2 * p0;
        const __m512 lo = _mm512_maskz_loadu_ps(first(left), row), hi = _mm512_maskz_loadu_ps(first(left - 16), row + 16);
        bad |= not_finite(lo) | not_finite(hi);
        v[i] = pairs_horizontal16(lo, hi);
      }
      transpose16(v);
      const index_t n_p = std::min<index_t>(16, kp - p0);
      std::uint32_t* tile = out + t0 / kMr * kp * kMr;
      for (index_t q = 0; q < n_p; ++q) {
        std::uint32_t* o = tile + (p0 + q) * kMr;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), _mm512_castsi512_si256(v[q]));
        if (t0 + kMr < rows)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + kp * kMr), _mm512_extracti64x4_epi64(v[q], 1));
      }
    }
  }
  return bad == 0;
}

// Panels [j0, j0 + count) of B, kNr columns each: panel j at out + (j - j0) * kp * kNr holds, for each pair p,
// kNr words (columns past m are zero).
// The packers read their source in memory order where they can: a walk down the columns of a row-major matrix
// goes row by row through the pages, and packing at that pace (L3 latency per row) cost as much as 20% of a
// W2 GEMM.
inline void pack_b(const float* b, bool trans_b, index_t k, index_t m, index_t kp, index_t j0, index_t count,
                   std::uint32_t* out) {
  if (!trans_b) {  // B (k, m): pair p from rows 2p and 2p + 1, read row by row
    for (index_t p = 0; p < kp; ++p) {
      const float* even = b + 2 * p * m;
      const float* odd = 2 * p + 1 < k ? even + m : nullptr;
      for (index_t j = j0; j < j0 + count; ++j) {
        std::uint32_t* o = out + (j - j0) * kp * kNr + p * kNr;
        const index_t c0 = j * kNr, cols = std::min(kNr, m - c0);
        __mmask16 unchecked = 0;
        column_pairs(even + c0, odd ? odd + c0 : nullptr, cols, o, &unchecked);
        std::fill(o + cols, o + kNr, 0u);
      }
    }
    return;
  }
  for (index_t j = j0; j < j0 + count; ++j) {
    std::uint32_t* panel = out + (j - j0) * kp * kNr;
    const index_t c0 = j * kNr, cols = std::min(kNr, m - c0);
    // B stored (m, k): 16 columns' pairs p0..p0+15 (16 vectors along p), transposed to 16 vectors along columns;
    // half a panel at a time, so that 16 rows of B are read front to back (the prefetchers follow 16 streams).
    for (index_t h = 0; h < kNr; h += 16) {
      for (index_t p0 = 0; p0 < kp; p0 += 16) {
        const index_t left = k - 2 * p0;
        __m512i v[16];
        for (int i = 0; i < 16; ++i) {
          if (h + i >= cols) {
            v[i] = _mm512_setzero_si512();
            continue;
          }
          const float* row = b + (c0 + h + i) * k + 2 * p0;
          v[i] = pairs_horizontal16(_mm512_maskz_loadu_ps(first(left), row),
                                    _mm512_maskz_loadu_ps(first(left - 16), row + 16));
        }
        transpose16(v);
        const index_t n_p = std::min<index_t>(16, kp - p0);
        for (index_t q = 0; q < n_p; ++q) _mm512_storeu_si512(panel + (p0 + q) * kNr + h, v[q]);
      }
    }
  }
}

// C[0:rows, 0:cols] (+)= the kMr×kNr product of A's tile (pairs p of its kMr rows at a[p * kMr + r]) and B's
// micro-panel (pair p of its kNr columns at bp[p * kNr + c]); without `add`, plus bias[0:cols] on every row
// when bias is given.
__attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"))) inline void micro_kernel(
    const std::uint32_t* a, const std::uint32_t* bp, index_t pairs, float* c, index_t ldc, index_t rows,
    index_t cols, bool add, const float* bias) {
  __m512 acc[kMr][2];
  for (int r = 0; r < kMr; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (index_t p = 0; p < pairs; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + p * kNr);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + p * kNr + 16);
    const std::uint32_t* ap = a + p * kMr;
#pragma GCC unroll 8
    for (int r = 0; r < kMr; ++r) {
      const std::uint32_t w = ap[r];
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(w));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
    }
  }
  const __mmask16 m0 = cols >= 16 ? __mmask16(0xffff) : __mmask16((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? __mmask16(0xffff) : cols <= 16 ? __mmask16(0) : __mmask16((1u << (cols - 16)) - 1);
  const bool with_bias = !add && bias;
  const __m512 bias0 = with_bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  const __m512 bias1 = with_bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
  for (int r = 0; r < kMr; ++r) {
    if (r >= rows) break;
    float* cr = c + r * ldc;
    __m512 v0 = acc[r][0], v1 = acc[r][1];
    if (add) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
    } else if (with_bias) {  // the same sum as the bias stored first and the product added to it
      v0 = _mm512_add_ps(v0, bias0);
      v1 = _mm512_add_ps(v1, bias1);
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}

// Returns false when A holds NaN or inf (C is then written all the same).
inline bool gemm_dot(const float* a, const float* b, float* c, index_t n, index_t k, index_t m, bool trans_a,
                     bool trans_b, bool accumulate, const float* bias) {
  const index_t kp = (k + 1) / 2, n_pad = (n + kMr - 1) / kMr * kMr, panels = (m + kNr - 1) / kNr;
  const index_t tiles = n_pad / kMr;
  // Each thread takes a range of panels (or, for narrow C, of row tiles) and packs, into its own scratch, the
  // operands it reads: its panels of B and all of A (or its rows of A and all of B). The smaller operand is
  // packed twice, but the product needs one parallel region and no barrier inside it.
  const bool by_panels = panels >= 2 * runtime::max_threads() || panels >= tiles;
  std::atomic<bool> finite{true};
  auto work = [&](index_t begin, index_t count) {
    const index_t i0 = by_panels ? 0 : begin, i1 = by_panels ? tiles : begin + count;
    const index_t j0 = by_panels ? begin : 0, j1 = by_panels ? begin + count : panels;
    const index_t rows = (i1 - i0) * kMr;
    std::uint32_t* pa = detail::scratch<std::uint32_t>(0, rows * kp);
    std::uint32_t* pb = detail::scratch<std::uint32_t>(1, (j1 - j0) * kp * kNr);
    if (!pack_a(a, trans_a, n, k, kp, i0 * kMr, rows, pa)) finite.store(false, std::memory_order_relaxed);
    pack_b(b, trans_b, k, m, kp, j0, j1 - j0, pb);
    // Tiles (row block i, panel j): B's micro-panel of kKc pairs stays in L1 while it meets every row block.
    for (index_t j = j0; j < j1; ++j) {
      const index_t cols = std::min(kNr, m - j * kNr);
      for (index_t p0 = 0; p0 < kp; p0 += kKc) {
        const index_t pairs = std::min(kKc, kp - p0);
        const bool add = accumulate || p0 > 0;
        const std::uint32_t* bp = pb + (j - j0) * kp * kNr + p0 * kNr;
        for (index_t i = i0; i < i1; ++i) {
          const std::uint32_t* ap = pa + (i - i0) * kp * kMr + p0 * kMr;
          float* ct = c + i * kMr * m + j * kNr;
          micro_kernel(ap, bp, pairs, ct, m, std::min(kMr, n - i * kMr), cols, add, bias ? bias + j * kNr : nullptr);
        }
      }
    }
  };
  for_each_slice(by_panels ? panels : tiles, 1, n * k * m, kParallelMinMacs, work);
  return finite.load(std::memory_order_relaxed);
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
// float64 operands always take it (their inputs are rounded to bf16 values all the same). bias (m values, or
// nullptr; not with accumulate): C = bias + op(A)·op(B), each row. check_finite: returns false, C unspecified,
// when A holds NaN or inf; true otherwise.
template <typename T>
bool bf16_gemm(const T* a, const T* b, T* c, index_t n, index_t k, index_t m, bool trans_a, bool trans_b,
               bool accumulate, const T* bias, bool check_finite, bool use_dot) {
  if (n == 0 || m == 0) return true;
  if (k == 0) {
    for (index_t i = 0; i < n && !accumulate; ++i)
      for (index_t j = 0; j < m; ++j) c[i * m + j] = bias ? bias[j] : T(0);
    return true;
  }
#if FASTNN_BF16_DOT
  if constexpr (std::is_same_v<T, float>) {
    if (use_dot && bf16_dot_supported<T>()) {
      const bool finite = bf16::gemm_dot(a, b, c, n, k, m, trans_a, trans_b, accumulate, accumulate ? nullptr : bias);
      return finite || !check_finite;
    }
  }
#endif
  (void)use_dot;
  if (check_finite && !all_finite(a, n * k)) return false;
  if (bias && !accumulate) {
    for (index_t i = 0; i < n; ++i) std::copy(bias, bias + m, c + i * m);
    accumulate = true;
  }
  T* ra = detail::scratch<T>(0, n * k);
  T* rb = detail::scratch<T>(1, k * m);
  parallel_for(n * k, n * k >= kParallelMinElements, [&](index_t i) { ra[i] = bf16::round(a[i]); });
  parallel_for(k * m, k * m >= kParallelMinElements, [&](index_t i) { rb[i] = bf16::round(b[i]); });
  batched_gemm(ra, rb, c, index_t(1), n, k, m, trans_a, trans_b, index_t(0), index_t(0), accumulate);
  return true;
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_BF16_GEMM_ENTRIES(X) X(bf16_gemm) X(bf16_dot_supported)
FASTNN_DECLARE_ENTRIES(FASTNN_BF16_GEMM_ENTRIES)

}  // namespace fastnn
