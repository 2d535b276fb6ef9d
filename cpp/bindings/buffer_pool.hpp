// Recycled memory for the large arrays the kernels return. A training step allocates the same activations and
// gradients (megabytes each) every step; from malloc, each is a fresh mmap whose pages fault in as the kernels
// first write them and go back to the system when NumPy frees the array: on W9 (bench_transformer.py) 300-560
// page faults and 2-4 ms of system time per 45 ms step. Arrays of at least kMinBytes are instead cut from
// buffers this pool keeps: a returned array owns its buffer through a capsule, and NumPy freeing the array
// gives the buffer back for the next array of that (page-rounded) size. Only fastnn's own outputs use it; the
// process's malloc settings are left alone. At most kMaxCachedBytes of free buffers are kept (beyond, a freed
// buffer goes back to the system); fastnn.ops.release_buffers() hands them all back. Buffers are 64-byte
// aligned. Taken and given back with the GIL held (a Python object is made or freed), under a mutex as well.
#pragma once
#include <cstddef>

namespace fastnn::bind::pool {

constexpr std::size_t kMinBytes = std::size_t(128) << 10;
constexpr std::size_t kMaxCachedBytes = std::size_t(1) << 30;

// A buffer of at least `bytes`; throws std::bad_alloc when none can be had.
void* acquire(std::size_t bytes);
// Gives back a buffer from acquire (a capsule destructor: never throws).
void release(void* data) noexcept;

}  // namespace fastnn::bind::pool
