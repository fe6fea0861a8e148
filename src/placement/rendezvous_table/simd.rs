//! Compiling the hot loops twice: for the target's baseline, and for AVX2 where the processor
//! has it.
//!
//! The loops are plain integer code that the compiler vectorises; AVX2 doubles their lanes over
//! x86-64's baseline SSE2. Both versions do the same integer operations, so they give the same
//! results: only the speed depends on the processor.

/// Defines a function whose body is compiled for the baseline and, on x86-64, for AVX2 too,
/// the AVX2 version running when the processor supports it.
macro_rules! vectorised {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$attr])*
        #[inline(never)]
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the processor supports AVX2, as just checked.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
