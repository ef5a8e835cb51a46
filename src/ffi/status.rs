//! Status codes and the per-thread last error message.

use std::cell::RefCell;
use std::os::raw::{c_char, c_int};

use crate::error::Error;

/// Result of every fallible `sml_` function. `SML_OK` is 0; the other values
/// are stable and never renumbered.
#[allow(non_camel_case_types)]
pub type sml_status = c_int;

/// Success.
pub const SML_OK: sml_status = 0;
/// A required pointer argument was NULL.
pub const SML_NULL_POINTER: sml_status = 1;
/// A size, batch, learning rate or other scalar argument is not acceptable,
/// or two arrays overlap, or a pointer is misaligned.
pub const SML_INVALID_ARGUMENT: sml_status = 2;
/// A size product overflows `size_t` or exceeds `PTRDIFF_MAX` bytes.
pub const SML_SIZE_OVERFLOW: sml_status = 3;
/// A label is not below the number of classes.
pub const SML_LABEL_OUT_OF_RANGE: sml_status = 4;
/// Array shapes disagree.
pub const SML_SHAPE_MISMATCH: sml_status = 5;
/// A file could not be opened or read.
pub const SML_IO: sml_status = 6;
/// A file is not a valid (optionally gzip-compressed) IDX file, or image and
/// label files disagree.
pub const SML_BAD_FORMAT: sml_status = 7;
/// The caller's buffer is too small (see `sml_last_error_message`).
pub const SML_BUFFER_TOO_SMALL: sml_status = 8;
/// The library panicked; the panic was caught at the boundary. Outputs may
/// have been partly written.
pub const SML_PANIC: sml_status = 9;

/// A failure on its way out through the C boundary: a status and a message.
#[derive(Debug)]
pub(crate) struct FfiError {
    pub status: sml_status,
    pub message: String,
}

impl FfiError {
    pub fn new(status: sml_status, message: impl Into<String>) -> Self {
        FfiError {
            status,
            message: message.into(),
        }
    }
}

impl From<Error> for FfiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::InvalidArgument(_) => SML_INVALID_ARGUMENT,
            Error::ShapeMismatch(_) => SML_SHAPE_MISMATCH,
            Error::LabelOutOfRange { .. } => SML_LABEL_OUT_OF_RANGE,
            Error::Idx(idx) if idx.kind.is_io() => SML_IO,
            Error::Idx(_) => SML_BAD_FORMAT,
        };
        FfiError::new(status, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// What [`with_last_error`] gives in a thread whose thread-local storage
/// is being torn down (a C `atexit` handler, a thread-exit destructor),
/// where no message can be kept.
pub(crate) const NO_LAST_ERROR: &str =
    "no message: this thread's storage is being torn down (called from an exit handler)";

/// Records `message` as this thread's last error, unless the thread's
/// storage is being torn down: a call from a C `atexit` handler or a
/// thread-exit destructor still returns its status (`LocalKey::with` would
/// panic there, outside any `catch_unwind`, and abort the host).
pub(crate) fn set_last_error(message: &str) {
    let _ = LAST_ERROR.try_with(|m| {
        let mut m = m.borrow_mut();
        m.clear();
        m.push_str(message);
    });
}

/// Runs `f` on this thread's last error message ([`NO_LAST_ERROR`] where
/// the thread's storage is being torn down).
pub(crate) fn with_last_error<R>(f: impl FnOnce(&str) -> R) -> R {
    let mut f = Some(f);
    match LAST_ERROR.try_with(|m| (f.take().expect("called once"))(&m.borrow())) {
        Ok(r) => r,
        Err(_) => (f.take().expect("not called"))(NO_LAST_ERROR),
    }
}

/// A static, NUL-terminated name for a status.
pub(crate) fn status_str(status: sml_status) -> &'static [u8] {
    match status {
        SML_OK => b"SML_OK\0",
        SML_NULL_POINTER => b"SML_NULL_POINTER\0",
        SML_INVALID_ARGUMENT => b"SML_INVALID_ARGUMENT\0",
        SML_SIZE_OVERFLOW => b"SML_SIZE_OVERFLOW\0",
        SML_LABEL_OUT_OF_RANGE => b"SML_LABEL_OUT_OF_RANGE\0",
        SML_SHAPE_MISMATCH => b"SML_SHAPE_MISMATCH\0",
        SML_IO => b"SML_IO\0",
        SML_BAD_FORMAT => b"SML_BAD_FORMAT\0",
        SML_BUFFER_TOO_SMALL => b"SML_BUFFER_TOO_SMALL\0",
        SML_PANIC => b"SML_PANIC\0",
        _ => b"SML_UNKNOWN_STATUS\0",
    }
}

pub(crate) fn as_c_str(bytes: &'static [u8]) -> *const c_char {
    debug_assert_eq!(bytes.last(), Some(&0));
    bytes.as_ptr().cast()
}
