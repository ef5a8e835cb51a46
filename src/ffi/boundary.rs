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

/// Number of elements of a rows×cols array of `T`, refused when the bytes
/// exceed `isize::MAX` (the most a slice may span). Zero dimensions count
/// as one here, as ndarray also bounds the product of the non-zero axis
/// lengths: `0 x 2^63` is refused rather than left to panic later.
pub(crate) fn elements<T>(what: &str, rows: usize, cols: usize) -> FfiResult<usize> {
    let fits = rows
        .max(1)
        .checked_mul(cols.max(1))
        .and_then(|len| len.checked_mul(std::mem::size_of::<T>()))
        .is_some_and(|bytes| bytes <= isize::MAX as usize);
    if !fits {
        return Err(FfiError::new(
            SML_SIZE_OVERFLOW,
            format!("{what}: {rows} x {cols} elements overflow the address space"),
        ));
    }
    Ok(rows * cols)
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
    if !ptr.is_aligned() {
        return Err(FfiError::new(
            SML_INVALID_ARGUMENT,
            format!("{what} is misaligned"),
        ));
    }
    Ok(())
}

/// A row-major rows×cols array argument whose size, pointer and alignment
/// have been checked, not yet turned into a slice. An export checks all its
/// arrays (and their overlaps) first and only then makes views, so no slice
/// ever exists over memory a refused call was never promised.
pub(crate) struct CArray<'n, T> {
    name: &'n str,
    ptr: *mut T,
    rows: usize,
    cols: usize,
}

// Manual impls: a derive would require `T: Copy`, but only the pointer is copied.
impl<T> Clone for CArray<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for CArray<'_, T> {}

impl<'n, T> CArray<'n, T> {
    /// Checks an input array: the size fits the address space, and the
    /// pointer is non-NULL (unless the array is empty) and aligned.
    pub(crate) fn new(name: &'n str, ptr: *const T, rows: usize, cols: usize) -> FfiResult<Self> {
        Self::new_mut(name, ptr.cast_mut(), rows, cols)
    }

    /// Checks an output array, as [`CArray::new`].
    pub(crate) fn new_mut(name: &'n str, ptr: *mut T, rows: usize, cols: usize) -> FfiResult<Self> {
        let len = elements::<T>(name, rows, cols)?;
        check_pointer(name, ptr, len)?;
        Ok(CArray {
            name,
            ptr,
            rows,
            cols,
        })
    }

    /// `(name, address, bytes)` for [`check_disjoint`].
    pub(crate) fn span(&self) -> Span<'n> {
        let bytes = self.rows * self.cols * std::mem::size_of::<T>();
        (self.name, self.ptr.cast_const().cast(), bytes)
    }

    fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Number of columns.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// The elements as one read-only slice.
    ///
    /// # Safety
    /// Unless the array is empty, the pointer must address `rows * cols`
    /// initialised elements that nothing writes for `'a`.
    pub(crate) unsafe fn slice<'a>(self) -> &'a [T] {
        if self.len() == 0 {
            return &[];
        }
        // SAFETY: non-NULL and aligned (checked in `new_mut`), len *
        // size_of::<T>() within isize::MAX (`elements`); validity is the
        // caller's promise.
        unsafe { std::slice::from_raw_parts(self.ptr.cast_const(), self.len()) }
    }

    /// A read-only view.
    ///
    /// # Safety
    /// As for [`CArray::slice`].
    pub(crate) unsafe fn view<'a>(self) -> ArrayView2<'a, T> {
        // SAFETY: forwarded to the caller's contract.
        let data = unsafe { self.slice() };
        ArrayView2::from_shape((self.rows, self.cols), data).expect("length is rows * cols")
    }

    /// The elements as a vector (for the labels).
    ///
    /// # Safety
    /// As for [`CArray::slice`].
    pub(crate) unsafe fn vector<'a>(self) -> ArrayView1<'a, T> {
        // SAFETY: forwarded to the caller's contract.
        ArrayView1::from(unsafe { self.slice() })
    }

    /// A mutable view.
    ///
    /// # Safety
    /// Unless the array is empty, the pointer must address `rows * cols`
    /// initialised elements that nothing else reads or writes for `'a`.
    pub(crate) unsafe fn view_mut<'a>(self) -> ArrayViewMut2<'a, T> {
        // SAFETY: forwarded to the caller's contract.
        let data = unsafe { self.slice_mut() };
        ArrayViewMut2::from_shape((self.rows, self.cols), data).expect("length is rows * cols")
    }

    /// The elements as one mutable slice.
    ///
    /// # Safety
    /// As for [`CArray::view_mut`].
    pub(crate) unsafe fn slice_mut<'a>(self) -> &'a mut [T] {
        if self.len() == 0 {
            return &mut [];
        }
        // SAFETY: as in `slice`, and the caller guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len()) }
    }
}

/// `(name, address, bytes)` of an array argument.
pub(crate) type Span<'n> = (&'n str, *const u8, usize);

/// Refuses an output that shares memory with another argument: Rust may
/// assume a `&mut` slice aliases nothing, and the result would depend on the
/// order of reads and writes.
pub(crate) fn check_disjoint(output: Span<'_>, others: &[Span<'_>]) -> FfiResult<()> {
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
