//! Instruction-set dispatch for the kernels.
//!
//! The kernels are written once, in safe Rust, on fixed-width groups of
//! 16 floats (`LANES`) that LLVM vectorises. Each entry point is compiled three
//! times — for AVX-512, for AVX2+FMA and portably — and the fastest one the
//! CPU supports is picked at run time, so the shipped library needs no
//! `-C target-cpu=native`. The AVX-512 and AVX2 builds compute the same
//! operations in the same order (with FMA), so they give identical bits; the
//! portable build does not fuse multiply-adds and may differ in the last bits.

use std::sync::atomic::{AtomicU8, Ordering};

/// Floats per lane group: one AVX-512 register, two AVX2 registers.
pub(crate) const LANES: usize = 16;
/// A group of lanes.
pub(crate) type Lanes = [f32; LANES];

/// What a kernel may assume about the CPU.
pub(crate) trait Isa: Copy + Send + Sync + 'static {
    /// Whether `a * b + c` is computed with one rounding (FMA).
    const FMA: bool;
    /// Whether AVX-512 instructions may be used. True only for [`Avx512`],
    /// which `multiversion!` instantiates only after detecting AVX-512.
    const AVX512: bool;
}

#[derive(Clone, Copy)]
pub(crate) struct Portable;
impl Isa for Portable {
    const FMA: bool = false;
    const AVX512: bool = false;
}

#[derive(Clone, Copy)]
pub(crate) struct Avx2;
impl Isa for Avx2 {
    const FMA: bool = true;
    const AVX512: bool = false;
}

#[derive(Clone, Copy)]
pub(crate) struct Avx512;
impl Isa for Avx512 {
    const FMA: bool = true;
    const AVX512: bool = true;
}

/// `a * b + c`, fused where the instruction set has FMA.
#[inline(always)]
pub(crate) fn mul_add<I: Isa>(a: f32, b: f32, c: f32) -> f32 {
    if I::FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `a * b + c` in double precision, fused where the instruction set has FMA.
#[inline(always)]
pub(crate) fn mul_add_f64<I: Isa>(a: f64, b: f64, c: f64) -> f64 {
    if I::FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `y += a * x` on fixed-size arrays, through a local copy so that LLVM sees
/// no possible aliasing and emits whole-register operations.
#[inline(always)]
pub(crate) fn axpy_n<I: Isa, const N: usize>(y: &mut [f32; N], a: f32, x: &[f32; N]) {
    let mut t = *y;
    let xs = *x;
    for l in 0..N {
        t[l] = mul_add::<I>(a, xs[l], t[l]);
    }
    *y = t;
}

/// Code paths, fastest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum SimdLevel {
    /// Plain Rust, no assumptions about the CPU.
    Portable = 1,
    /// x86-64 with AVX2 and FMA.
    Avx2 = 2,
    /// x86-64 with AVX-512 (F, VL, BW, DQ).
    Avx512 = 3,
}

static LEVEL: AtomicU8 = AtomicU8::new(0);

fn detect() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = has!("avx2")
            && has!("fma")
            && has!("bmi1")
            && has!("bmi2")
            && has!("popcnt")
            && has!("lzcnt");
        if avx2 && has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("avx512dq") {
            return SimdLevel::Avx512;
        }
        if avx2 {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Portable
}

/// The best code path this CPU supports.
pub fn supported_simd_level() -> SimdLevel {
    detect()
}

/// The code path the kernels use: the best one supported, unless lowered by
/// [`set_simd_level`] or the `SML_SIMD` environment variable
/// (`portable`, `avx2`, `avx512`) read at first use.
pub fn simd_level() -> SimdLevel {
    match LEVEL.load(Ordering::Relaxed) {
        1 => SimdLevel::Portable,
        2 => SimdLevel::Avx2,
        3 => SimdLevel::Avx512,
        _ => {
            let best = detect();
            let wanted = match std::env::var("SML_SIMD").as_deref() {
                Ok("portable") => SimdLevel::Portable,
                Ok("avx2") => SimdLevel::Avx2,
                _ => best,
            };
            let level = wanted.min(best);
            LEVEL.store(level as u8, Ordering::Relaxed);
            level
        }
    }
}

/// Lowers (or restores) the code path; a level the CPU lacks is clamped to
/// the best supported one. Returns the level now in use.
pub fn set_simd_level(level: SimdLevel) -> SimdLevel {
    let level = level.min(detect());
    LEVEL.store(level as u8, Ordering::Relaxed);
    level
}

/// Defines `$name(arg)` that runs the generic `$generic::<I>(arg)` compiled
/// for the best instruction set available.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($arg:ident: $ty:ty) -> $ret:ty => $generic:ident) => {
        $(#[$meta])*
        #[allow(unsafe_code)] // calls the target_feature builds after detection
        $vis fn $name($arg: $ty) -> $ret {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2,popcnt,lzcnt")]
            fn avx512($arg: $ty) -> $ret {
                $generic::<$crate::simd::Avx512>($arg)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,bmi1,bmi2,popcnt,lzcnt")]
            fn avx2($arg: $ty) -> $ret {
                $generic::<$crate::simd::Avx2>($arg)
            }
            match $crate::simd::simd_level() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: simd_level() only reports AVX-512 after detecting
                // every feature enabled on `avx512`.
                $crate::simd::SimdLevel::Avx512 => unsafe { avx512($arg) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: simd_level() only reports AVX2 after detecting every
                // feature enabled on `avx2`.
                $crate::simd::SimdLevel::Avx2 => unsafe { avx2($arg) },
                _ => $generic::<$crate::simd::Portable>($arg),
            }
        }
    };
}
pub(crate) use multiversion;

/// Runs `$body` with the const `$c` set to `$value`, one of the listed
/// sizes; any other value runs it with the last. Turns a size known only at
/// run time into a const generic argument for the kernels.
macro_rules! with_const {
    ($value:expr, $c:ident in [$($size:literal)*; $last:literal] => $body:expr) => {
        match $value {
            $($size => {
                const $c: usize = $size;
                $body
            })*
            _ => {
                const $c: usize = $last;
                $body
            }
        }
    };
}
pub(crate) use with_const;
