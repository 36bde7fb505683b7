// Fibers for the CUDA emulator: user-space contexts that each CUDA thread of a block runs on.
//
// A fiber is a stack plus the registers saved when it last switched away. switch_context(from, to)
// saves the current registers into `from` and resumes `to`; there is no kernel call, so a switch
// costs a few nanoseconds (ucontext's swapcontext makes a sigprocmask system call on every switch,
// hundreds of nanoseconds). x86-64 uses the hand-written switch below (the System V callee-saved
// registers rbx rbp r12-r15 are pushed on the old stack, rsp is swapped, they are popped from the
// new one, as in Boost.Context's fcontext); other targets fall back to ucontext. The floating-point
// control registers (MXCSR, x87 control word) are not switched: every fiber of a worker shares them.
//
// Stacks come from FiberStacks: one mmap per worker thread holding `count` slots, each with a
// PROT_NONE guard page at its low end (a runaway recursion faults instead of corrupting the
// neighbour), reused by every block the worker runs. The slot size is 64 KiB (256 KiB under
// AddressSanitizer, whose redzones grow frames), overridable with STRATA_EMU_STACK_KB; pages are
// committed only when touched.
//
// Under AddressSanitizer every switch is annotated with __sanitizer_start_switch_fiber /
// __sanitizer_finish_switch_fiber, so ASan knows which stack is live (exceptions thrown inside a
// kernel and stack-buffer errors are then reported correctly).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "strata/core/error.hpp"

// STRATA_EMU_UCONTEXT forces the portable ucontext switch on x86-64 too (to test it)
#if defined(__x86_64__) && !defined(STRATA_EMU_UCONTEXT)
#define STRATA_EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define STRATA_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STRATA_EMU_ASAN 1
#endif
#endif
#if defined(STRATA_EMU_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// The switch must stay opaque to the compiler: GCC's interprocedural register allocation (-fipa-ra)
// would otherwise let callers keep values in caller-saved registers across it.
#if defined(__clang__)
#define STRATA_EMU_OPAQUE [[gnu::naked, gnu::noinline]]
#else
#define STRATA_EMU_OPAQUE [[gnu::naked, gnu::noinline, gnu::noipa]]
#endif

namespace strata::emu::detail {

/// The saved state of a suspended fiber (or of the worker thread's own stack), and the bounds of
/// its stack (needed by the ASan annotations).
struct Context {
#if defined(STRATA_EMU_ASM_SWITCH)
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
  const void* stack_lo = nullptr;
  size_t stack_size = 0;
};

#if defined(STRATA_EMU_ASM_SWITCH)
// context_switch(&from->sp, to->sp): push the callee-saved registers, save rsp, load the new rsp,
// pop its registers and `ret` to wherever that context stopped (or to context_trampoline for a
// fiber that has not run yet). Naked: no prologue, the asm is the whole function.
STRATA_EMU_OPAQUE inline void context_switch(void** /*from_sp*/, void* /*to_sp*/) {
  asm("pushq %rbp\n\t"
      "pushq %rbx\n\t"
      "pushq %r12\n\t"
      "pushq %r13\n\t"
      "pushq %r14\n\t"
      "pushq %r15\n\t"
      "movq %rsp, (%rdi)\n\t"
      "movq %rsi, %rsp\n\t"
      "popq %r15\n\t"
      "popq %r14\n\t"
      "popq %r13\n\t"
      "popq %r12\n\t"
      "popq %rbx\n\t"
      "popq %rbp\n\t"
      "ret\n\t");
}

// First code a new fiber runs: make_context left the entry function in r13 and its argument in
// r12. The entry never returns (a finished fiber switches away for good); ud2 traps if it does.
STRATA_EMU_OPAQUE inline void context_trampoline() {
  asm(".cfi_undefined rip\n\t"  // the outermost frame of a fiber: unwinding ends here
      "movq %r12, %rdi\n\t"
      "callq *%r13\n\t"
      "ud2\n\t");
}
#else
inline thread_local void (*tl_ucontext_entry)(void*) = nullptr;
inline thread_local void* tl_ucontext_arg = nullptr;
inline void ucontext_trampoline() { tl_ucontext_entry(tl_ucontext_arg); }
#endif

/// Prepares `ctx` so that switching to it calls entry(arg) on the stack [lo, lo + size).
inline void make_context(Context& ctx, void* lo, size_t size, void (*entry)(void*), void* arg) {
  ctx.stack_lo = lo;
  ctx.stack_size = size;
#if defined(STRATA_EMU_ASM_SWITCH)
  // two zero words at the very top: the trampoline's "return address" is 0, so stack walkers (the
  // unwinder, ASan's reports, gdb) stop there instead of reading past the stack
  auto top = ((reinterpret_cast<uintptr_t>(lo) + size) & ~uintptr_t(15)) - 16;
  reinterpret_cast<void**>(top)[0] = nullptr;
  reinterpret_cast<void**>(top)[1] = nullptr;
  auto* sp = reinterpret_cast<void**>(top - 56);  // 7 words; after they are popped rsp == top
  sp[0] = nullptr;                                // r15
  sp[1] = nullptr;                                // r14
  sp[2] = reinterpret_cast<void*>(entry);         // r13
  sp[3] = arg;                                    // r12
  sp[4] = nullptr;                                // rbx
  sp[5] = nullptr;                                // rbp: ends frame-pointer stack walks here
  sp[6] = reinterpret_cast<void*>(&context_trampoline);  // return address of the first switch
  ctx.sp = sp;
#else
  getcontext(&ctx.uc);
  ctx.uc.uc_stack.ss_sp = lo;
  ctx.uc.uc_stack.ss_size = size;
  ctx.uc.uc_link = nullptr;
  // makecontext passes only int arguments: entry and arg go through thread-locals instead (the
  // emulator starts every fiber of a worker with the same entry and argument, on that worker)
  makecontext(&ctx.uc, reinterpret_cast<void (*)()>(&ucontext_trampoline), 0);
  tl_ucontext_entry = entry;
  tl_ucontext_arg = arg;
#endif
}

/// Saves the running context into `from` and resumes `to`; returns when something switches back
/// to `from`. `from_finished`: the running fiber will never be resumed (lets ASan free its state).
inline void switch_context(Context& from, Context& to, bool from_finished = false) {
#if defined(STRATA_EMU_ASAN)
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(from_finished ? nullptr : &fake_stack, to.stack_lo, to.stack_size);
#else
  (void)from_finished;
#endif
#if defined(STRATA_EMU_ASM_SWITCH)
  context_switch(&from.sp, to.sp);
#else
  swapcontext(&from.uc, &to.uc);
#endif
#if defined(STRATA_EMU_ASAN)
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

/// Called first thing by a fiber's entry function (completes the ASan switch into a new fiber).
inline void fiber_started() {
#if defined(STRATA_EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
}

/// A context for the calling OS thread's own stack, with its bounds (for ASan).
inline void init_thread_context(Context& ctx) {
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* lo = nullptr;
    size_t size = 0;
    if (pthread_attr_getstack(&attr, &lo, &size) == 0) {
      ctx.stack_lo = lo;
      ctx.stack_size = size;
    }
    pthread_attr_destroy(&attr);
  }
}

inline size_t fiber_stack_bytes() {
  size_t kb = 64;
#if defined(STRATA_EMU_ASAN)
  kb = 256;
#endif
  if (const char* s = std::getenv("STRATA_EMU_STACK_KB")) {
    const long v = std::atol(s);
    if (v >= 16) kb = size_t(v);
  }
  return kb * 1024;
}

/// `count` fiber stacks in one mapping, each slot a guard page followed by the usable stack.
class FiberStacks {
 public:
  FiberStacks() = default;
  FiberStacks(const FiberStacks&) = delete;
  FiberStacks& operator=(const FiberStacks&) = delete;
  ~FiberStacks() { release(); }

  int count() const { return count_; }
  /// Usable bytes of each stack.
  size_t size() const { return slot_ - page_; }
  /// Low end of stack i's usable part.
  void* stack(int i) const { return base_ + size_t(i) * slot_ + page_; }

  /// Makes at least n stacks available (never while a fiber runs on one of them).
  void reserve(int n) {
    if (n <= count_) return;
    release();
    page_ = size_t(sysconf(_SC_PAGESIZE));
    slot_ = (fiber_stack_bytes() + page_ - 1) / page_ * page_ + page_;
    const size_t bytes = size_t(n) * slot_;
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    STRATA_CHECK(p != MAP_FAILED, "launch", "got no memory for ", n, " fiber stacks of ", slot_,
                 " bytes, expected mmap to succeed");
    base_ = static_cast<char*>(p);
    count_ = n;
#if defined(STRATA_EMU_ASAN)
    __asan_unpoison_memory_region(base_, bytes);  // the range may hold stale shadow from an old mapping
#endif
    for (int i = 0; i < n; ++i) mprotect(base_ + size_t(i) * slot_, page_, PROT_NONE);
  }

  /// Forgets whatever an abandoned fiber left poisoned in ASan's shadow of the stacks.
  void unpoison([[maybe_unused]] int n) {
#if defined(STRATA_EMU_ASAN)
    for (int i = 0; i < n && i < count_; ++i) __asan_unpoison_memory_region(stack(i), size());
#endif
  }

 private:
  void release() {
    if (base_) munmap(base_, size_t(count_) * slot_);
    base_ = nullptr;
    count_ = 0;
  }
  char* base_ = nullptr;
  size_t slot_ = 0, page_ = 4096;
  int count_ = 0;
};

}  // namespace strata::emu::detail

#undef STRATA_EMU_OPAQUE
#undef STRATA_EMU_ASM_SWITCH
