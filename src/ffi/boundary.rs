//! The two things every export does: catch panics, and turn C pointers plus
//! sizes into checked slices and ndarray views.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};

use super::status::{
    set_last_error, sml_status, FfiError, SML_INVALID_ARGUMENT, SML_NULL_POINTER, SML_OK,
    SML_PANIC, SML_SIZE_OVERFLOW,
};

pub(crate) type FfiResult<T> = Result<T, FfiError>;

/// Runs an export's body: success clears the thread's last error, a failure
/// records it, and a panic is caught here — since Rust 1.81 a panic leaving
/// an `extern "C"` function aborts the host process.
pub(crate) fn ffi_call(body: impl FnOnce() -> FfiResult<()>) -> sml_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error("");
            SML_OK
        }
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_string());
            set_last_error(&format!("panic inside simple_ml: {what}"));
            SML_PANIC
        }
    }
}

/// Number of elements of a rows×cols array of `T`, refused when the product
/// overflows or the bytes exceed `isize::MAX` (the most a slice may span).
pub(crate) fn elements<T>(what: &str, rows: usize, cols: usize) -> FfiResult<usize> {
    rows.checked_mul(cols)
        .filter(|&len| {
            len.checked_mul(std::mem::size_of::<T>())
                .is_some_and(|bytes| bytes <= isize::MAX as usize)
        })
        .ok_or_else(|| {
            FfiError::new(
                SML_SIZE_OVERFLOW,
                format!("{what}: {rows} x {cols} elements overflow the address space"),
            )
        })
}

fn check_pointer<T>(what: &str, ptr: *const T, len: usize) -> FfiResult<()> {
    if len == 0 {
        return Ok(());
    }
    if ptr.is_null() {
        return Err(FfiError::new(
            SML_NULL_POINTER,
            format!("{what} is NULL but must hold {len} elements"),
        ));
    }
    if (ptr as usize) % std::mem::align_of::<T>() != 0 {
        return Err(FfiError::new(
            SML_INVALID_ARGUMENT,
            format!("{what} is misaligned"),
        ));
    }
    Ok(())
}

/// A read-only slice of `len` elements at `ptr`; NULL is accepted only when
/// `len` is 0.
///
/// # Safety
/// Unless NULL, `ptr` must point to `len` initialised elements that stay
/// valid and unmodified for `'a`.
pub(crate) unsafe fn slice<'a, T>(what: &str, ptr: *const T, len: usize) -> FfiResult<&'a [T]> {
    check_pointer(what, ptr, len)?;
    if len == 0 {
        return Ok(&[]);
    }
    // SAFETY: ptr is non-NULL and aligned (checked above); the caller
    // guarantees it points to `len` valid elements for 'a, and `elements`
    // has bounded len * size_of::<T>() by isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A mutable slice of `len` elements at `ptr`; NULL is accepted only when
/// `len` is 0.
///
/// # Safety
/// Unless NULL, `ptr` must point to `len` initialised elements that nothing
/// else reads or writes for `'a`.
pub(crate) unsafe fn slice_mut<'a, T>(
    what: &str,
    ptr: *mut T,
    len: usize,
) -> FfiResult<&'a mut [T]> {
    check_pointer(what, ptr, len)?;
    if len == 0 {
        return Ok(&mut []);
    }
    // SAFETY: as in `slice`, and the caller guarantees exclusive access.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// A row-major rows×cols matrix at `ptr`.
///
/// # Safety
/// As for [`slice`] with `len = rows * cols`.
pub(crate) unsafe fn matrix<'a, T>(
    what: &str,
    ptr: *const T,
    rows: usize,
    cols: usize,
) -> FfiResult<ArrayView2<'a, T>> {
    let len = elements::<T>(what, rows, cols)?;
    // SAFETY: forwarded to the caller's contract.
    let data = unsafe { slice(what, ptr, len)? };
    Ok(ArrayView2::from_shape((rows, cols), data).expect("length is rows * cols"))
}

/// A mutable row-major rows×cols matrix at `ptr`.
///
/// # Safety
/// As for [`slice_mut`] with `len = rows * cols`.
pub(crate) unsafe fn matrix_mut<'a, T>(
    what: &str,
    ptr: *mut T,
    rows: usize,
    cols: usize,
) -> FfiResult<ArrayViewMut2<'a, T>> {
    let len = elements::<T>(what, rows, cols)?;
    // SAFETY: forwarded to the caller's contract.
    let data = unsafe { slice_mut(what, ptr, len)? };
    Ok(ArrayViewMut2::from_shape((rows, cols), data).expect("length is rows * cols"))
}

/// The label vector of length `m`.
///
/// # Safety
/// As for [`slice`].
pub(crate) unsafe fn labels<'a>(y: *const u8, m: usize) -> FfiResult<ArrayView1<'a, u8>> {
    // SAFETY: forwarded to the caller's contract.
    Ok(ArrayView1::from(unsafe { slice("y", y, m)? }))
}

/// Refuses an output that shares memory with another argument: Rust may
/// assume a `&mut` slice aliases nothing, and the result would depend on the
/// order of reads and writes.
pub(crate) fn check_disjoint(
    output: (&str, *const u8, usize),
    others: &[(&str, *const u8, usize)],
) -> FfiResult<()> {
    let (name, start, bytes) = output;
    let (a0, a1) = (start as usize, (start as usize).saturating_add(bytes));
    for &(other, ptr, len) in others {
        let (b0, b1) = (ptr as usize, (ptr as usize).saturating_add(len));
        if bytes > 0 && len > 0 && a0 < b1 && b0 < a1 {
            return Err(FfiError::new(
                SML_INVALID_ARGUMENT,
                format!("{name} overlaps {other} in memory"),
            ));
        }
    }
    Ok(())
}

/// `(name, address, bytes)` of an array argument, for [`check_disjoint`].
pub(crate) fn span<'n, T>(
    name: &'n str,
    ptr: *const T,
    rows: usize,
    cols: usize,
) -> (&'n str, *const u8, usize) {
    let bytes = rows
        .saturating_mul(cols)
        .saturating_mul(std::mem::size_of::<T>());
    (name, ptr.cast(), bytes)
}

/// Writes `value` through an output pointer, refusing NULL.
///
/// # Safety
/// Unless NULL, `out` must be valid for a write of one `T`.
pub(crate) unsafe fn write_out<T>(what: &str, out: *mut T, value: T) -> FfiResult<()> {
    if out.is_null() {
        return Err(FfiError::new(SML_NULL_POINTER, format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, and the caller guarantees it is valid for a write.
    unsafe { out.write_unaligned(value) };
    Ok(())
}

/// Refuses a NULL output pointer before any work is done.
pub(crate) fn check_out<T>(what: &str, out: *mut T) -> FfiResult<()> {
    if out.is_null() {
        return Err(FfiError::new(SML_NULL_POINTER, format!("{what} is NULL")));
    }
    Ok(())
}
