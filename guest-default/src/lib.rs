//! The default vk-stackpath placement policy: `docs/mapping.md` as code.
//!
//! Built for `wasm32-wasip2` it is a component implementing the `stackpath:policy` world
//! (see `wit/policy.wit`) and is embedded in the daemon. Built natively it is an ordinary
//! library, used as the benchmark baseline and in property tests.
//!
//! It is also a library for custom Rust policies that start from the default mapping: depend
//! on it with `default-features = false` (no `component` feature: no exports, no global
//! allocator), call [`translate`] and adjust its [`api::Translation`]
//! (`examples/policies/rust-strict` does this; `docs/policies.md` walks through it).

// No std: the component then imports nothing from WASI (std's wasip2 support comes with the
// WASI preview-1 adapter, a second core instance with its own memory that every call would
// instantiate). Everything here needs only `alloc`; natively (tests, the benchmark baseline)
// the crate keeps std, which its cdylib output needs there.
#![cfg_attr(all(target_arch = "wasm32", not(test)), no_std)]

extern crate alloc;

/// What std's prelude would give.
mod prelude {
    pub use alloc::format;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec;
    pub use alloc::vec::Vec;
}

pub mod api;
pub mod input;
pub mod mapping;
pub mod output;
pub mod quantity;
pub mod sizing;
pub mod text;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod bump;
#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
#[global_allocator]
static ALLOCATOR: bump::Bump = bump::Bump::new();

/// A panic (a bug in the mapping) traps: the host reports the trap for that pod and keeps
/// serving. Without std there is nothing to print the message to anyway.
#[cfg(all(target_arch = "wasm32", feature = "component", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// The canonical ABI's allocator export (std's C library would provide it): the host calls
/// it to place the pod and the context in the instance's memory.
#[cfg(all(target_arch = "wasm32", feature = "component", not(test)))]
#[unsafe(no_mangle)]
unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use alloc::alloc::{Layout, alloc, realloc};
    if new_len == 0 {
        return align as *mut u8;
    }
    // SAFETY: the canonical ABI passes a power-of-two alignment, and `old_ptr`/`old_len` of
    // an earlier allocation of this function when `old_len` is not 0.
    let ptr = unsafe {
        if old_len == 0 {
            alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            realloc(
                old_ptr,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if ptr.is_null() {
        core::arch::wasm32::unreachable();
    }
    ptr
}

/// Without std there is no C library; compiler_builtins provides memcpy and friends but not
/// memcmp, which slice and string comparisons call.
#[cfg(all(target_arch = "wasm32", feature = "component", not(test)))]
#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller passes two regions of at least `n` bytes, as for C's memcmp.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

pub use mapping::translate;

pub const NAME: &str = "default";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const DESCRIPTION: &str = "The mapping of MAPPING.md: one StackPath container per Kubernetes \
    container, the smallest SP size that fits, probes, hooks, security contexts, CSI volumes.";
