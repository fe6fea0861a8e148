//! The hot loops of the build, written as plain integer code that the compiler vectorises for
//! the target's baseline.
//!
//! Dispatching to a wider instruction set at run time (AVX2) would need `unsafe`, which the
//! library forbids; a service that wants it can build with `-C target-cpu=native`.

/// Defines a function whose body is kept out of line, so that its loops are vectorised once.
macro_rules! vectorised {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$attr])*
        #[inline(never)]
        $vis fn $name($($arg: $ty),*) $body
    };
}
