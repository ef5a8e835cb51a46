//! The C ABI. Every function here only validates, converts and maps errors;
//! the maths lives in the safe core.
//!
//! Conventions (also in the README and the header):
//! - Fallible functions return an `sml_status`; on failure the calling
//!   thread's last error holds a message (`sml_last_error_message`) and no
//!   output has been written. A success clears the last error.
//! - Array arguments are row-major and come with their sizes. A pointer may
//!   be NULL only when its array is empty (m = 0). Outputs must not overlap
//!   inputs.
//! - Panics are caught at the boundary and reported as `SML_PANIC`.
//! - Functions are thread-safe: concurrent calls on distinct outputs are
//!   safe and give the same bits as sequential calls.
#![allow(unsafe_code)]
#![allow(non_snake_case, non_camel_case_types)]

mod boundary;
mod status;

use std::ffi::{c_char, c_int, c_uchar, c_void, CStr};
use std::ops::ControlFlow;

use ndarray::{Array1, Array2};

use crate::loss::{loss_err, Real};
use crate::mnist::read_images;
use crate::numpy_rng::course_init_weights;
use crate::sgd::Sgd;
use crate::softmax_regression::{
    softmax_regression_epoch, softmax_regression_loss_err, softmax_regression_predict,
};
use crate::train::{fit_nn, fit_softmax, Data, EpochControl, EpochReport, NnConfig, SoftmaxConfig};
use crate::two_layer::{nn_epoch, nn_loss_err, nn_predict};
use crate::LossErr;

use boundary::{check_disjoint, check_out, ffi_call, write_out, CArray, FfiResult, Span};
pub use status::*;

/// Major version of the library (the header's copy of Cargo.toml's).
pub const SML_VERSION_MAJOR: u32 = 0;
/// Minor version of the library.
pub const SML_VERSION_MINOR: u32 = 1;
/// Patch version of the library.
pub const SML_VERSION_PATCH: u32 = 0;

// ---------------------------------------------------------------------------
// The course's entry points, with their fixed signatures.
// ---------------------------------------------------------------------------

/// One epoch of softmax regression SGD — the course's `simple_ml_ext` entry
/// point, same name and signature.
///
/// X is m×n, theta n×k (updated in place), both row-major float; y holds m
/// labels, each < k. Minibatches of `batch` rows are taken in order without
/// shuffling; a final partial batch is used and divided by its own size.
///
/// On refused input (NULL, zero sizes, batch 0, non-finite lr, label >= k,
/// overflowing sizes, theta overlapping X or y) nothing is written and the
/// reason is left in `sml_last_error_message`; use
/// `sml_softmax_regression_epoch` to get a status.
///
/// # Safety
/// Unless NULL, X must point to m*n floats, y to m bytes and theta to n*k
/// floats, valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn softmax_regression_epoch_cpp(
    X: *const f32,
    y: *const c_uchar,
    theta: *mut f32,
    m: usize,
    n: usize,
    k: usize,
    lr: f32,
    batch: usize,
) {
    // SAFETY: same contract.
    unsafe { sml_softmax_regression_epoch(X, y, theta, m, n, k, lr, batch) };
}

/// One epoch of two-layer network SGD: W1 (n×d) and W2 (d×k) are updated in
/// place. Same conventions as `softmax_regression_epoch_cpp`; use
/// `sml_nn_epoch` to get a status.
///
/// # Safety
/// Unless NULL, X must point to m*n floats, y to m bytes, W1 to n*d floats
/// and W2 to d*k floats, valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn nn_epoch_cpp(
    X: *const f32,
    y: *const c_uchar,
    W1: *mut f32,
    W2: *mut f32,
    m: usize,
    n: usize,
    d: usize,
    k: usize,
    lr: f32,
    batch: usize,
) {
    // SAFETY: same contract.
    unsafe { sml_nn_epoch(X, y, W1, W2, m, n, d, k, lr, batch) };
}

/// Mean softmax loss of the m×k logits Z against labels y. Returns NaN on
/// refused input (reason in `sml_last_error_message`).
///
/// # Safety
/// Unless NULL, Z must point to m*k floats and y to m bytes.
#[no_mangle]
pub unsafe extern "C" fn softmax_loss_cpp(
    Z: *const f32,
    y: *const c_uchar,
    m: usize,
    k: usize,
) -> f32 {
    let mut loss = f64::NAN;
    // SAFETY: same contract.
    match unsafe { sml_softmax_loss_f32(Z, y, m, k, &mut loss) } {
        SML_OK => loss as f32,
        _ => f32::NAN,
    }
}

// ---------------------------------------------------------------------------
// SGD epochs.
// ---------------------------------------------------------------------------

/// One epoch of softmax regression SGD, as `softmax_regression_epoch_cpp`,
/// returning a status. theta is written only on success.
///
/// # Safety
/// Unless NULL, X must point to m*n floats, y to m bytes and theta to n*k
/// floats, valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn sml_softmax_regression_epoch(
    X: *const f32,
    y: *const c_uchar,
    theta: *mut f32,
    m: usize,
    n: usize,
    k: usize,
    lr: f32,
    batch: usize,
) -> sml_status {
    ffi_call(|| {
        let x = CArray::new("X", X, m, n)?;
        let y = CArray::new("y", y, m, 1)?;
        let theta = CArray::new_mut("theta", theta, n, k)?;
        check_disjoint(theta.span(), &[x.span(), y.span()])?;
        // SAFETY: every array is checked; the caller's contract covers the memory.
        unsafe {
            softmax_regression_epoch(x.view(), y.vector(), theta.view_mut(), Sgd { lr, batch })?;
        }
        Ok(())
    })
}

/// One epoch of two-layer network SGD, as `nn_epoch_cpp`, returning a
/// status. W1 and W2 are written only on success.
///
/// # Safety
/// Unless NULL, X must point to m*n floats, y to m bytes, W1 to n*d floats
/// and W2 to d*k floats, valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn sml_nn_epoch(
    X: *const f32,
    y: *const c_uchar,
    W1: *mut f32,
    W2: *mut f32,
    m: usize,
    n: usize,
    d: usize,
    k: usize,
    lr: f32,
    batch: usize,
) -> sml_status {
    ffi_call(|| {
        let x = CArray::new("X", X, m, n)?;
        let y = CArray::new("y", y, m, 1)?;
        let w1 = CArray::new_mut("W1", W1, n, d)?;
        let w2 = CArray::new_mut("W2", W2, d, k)?;
        check_disjoint(w1.span(), &[x.span(), y.span(), w2.span()])?;
        check_disjoint(w2.span(), &[x.span(), y.span()])?;
        // SAFETY: every array is checked; the caller's contract covers the memory.
        unsafe {
            let sgd = Sgd { lr, batch };
            nn_epoch(x.view(), y.vector(), w1.view_mut(), w2.view_mut(), sgd)?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Loss, error rate, evaluation and prediction.
// ---------------------------------------------------------------------------

unsafe fn loss_err_of_logits<F: Real>(
    Z: *const F,
    y: *const c_uchar,
    m: usize,
    k: usize,
) -> FfiResult<LossErr> {
    let z = CArray::new("Z", Z, m, k)?;
    let y = CArray::new("y", y, m, 1)?;
    // SAFETY: both arrays are checked; the caller's contract covers the memory.
    unsafe { Ok(loss_err(z.view(), y.vector())?) }
}

/// Mean softmax loss of the m×k float logits Z against labels y, written to
/// `*out_loss` (computed per row in float, averaged in double).
///
/// # Safety
/// Unless NULL, Z must point to m*k floats, y to m bytes, out_loss to a double.
#[no_mangle]
pub unsafe extern "C" fn sml_softmax_loss_f32(
    Z: *const f32,
    y: *const c_uchar,
    m: usize,
    k: usize,
    out_loss: *mut f64,
) -> sml_status {
    ffi_call(|| {
        check_out("out_loss", out_loss)?;
        // SAFETY: the caller's contract covers every pointer and size.
        unsafe {
            let le = loss_err_of_logits(Z, y, m, k)?;
            write_out("out_loss", out_loss, le.loss)
        }
    })
}

/// Mean softmax loss of the m×k double logits Z, computed in double.
///
/// # Safety
/// Unless NULL, Z must point to m*k doubles, y to m bytes, out_loss to a double.
#[no_mangle]
pub unsafe extern "C" fn sml_softmax_loss_f64(
    Z: *const f64,
    y: *const c_uchar,
    m: usize,
    k: usize,
    out_loss: *mut f64,
) -> sml_status {
    ffi_call(|| {
        check_out("out_loss", out_loss)?;
        // SAFETY: the caller's contract covers every pointer and size.
        unsafe {
            let le = loss_err_of_logits(Z, y, m, k)?;
            write_out("out_loss", out_loss, le.loss)
        }
    })
}

/// Mean softmax loss and error rate (fraction of rows whose argmax is not
/// the label) of m×k float logits.
///
/// # Safety
/// Unless NULL, Z must point to m*k floats, y to m bytes, out_loss and
/// out_err to doubles.
#[no_mangle]
pub unsafe extern "C" fn sml_loss_err_f32(
    Z: *const f32,
    y: *const c_uchar,
    m: usize,
    k: usize,
    out_loss: *mut f64,
    out_err: *mut f64,
) -> sml_status {
    ffi_call(|| {
        check_outs(out_loss, out_err)?;
        // SAFETY: the caller's contract covers every pointer and size.
        unsafe { write_loss_err(loss_err_of_logits(Z, y, m, k)?, out_loss, out_err) }
    })
}

/// Mean softmax loss and error rate of m×k double logits.
///
/// # Safety
/// Unless NULL, Z must point to m*k doubles, y to m bytes, out_loss and
/// out_err to doubles.
#[no_mangle]
pub unsafe extern "C" fn sml_loss_err_f64(
    Z: *const f64,
    y: *const c_uchar,
    m: usize,
    k: usize,
    out_loss: *mut f64,
    out_err: *mut f64,
) -> sml_status {
    ffi_call(|| {
        check_outs(out_loss, out_err)?;
        // SAFETY: the caller's contract covers every pointer and size.
        unsafe { write_loss_err(loss_err_of_logits(Z, y, m, k)?, out_loss, out_err) }
    })
}

fn check_outs(out_loss: *mut f64, out_err: *mut f64) -> FfiResult<()> {
    check_out("out_loss", out_loss)?;
    check_out("out_err", out_err)
}

/// Refuses a zero dimension. The epochs' core checks these; evaluation
/// would otherwise accept, say, n = 0 and score all-zero logits.
fn check_dims(dims: &[(&str, usize)]) -> FfiResult<()> {
    for &(what, v) in dims {
        crate::sgd::check_positive(what, v)?;
    }
    Ok(())
}

unsafe fn write_loss_err(le: LossErr, out_loss: *mut f64, out_err: *mut f64) -> FfiResult<()> {
    // SAFETY: the caller guarantees validity of both (NULL is refused).
    unsafe {
        write_out("out_loss", out_loss, le.loss)?;
        write_out("out_err", out_err, le.err)
    }
}

/// Loss and error rate of softmax regression (theta n×k) on X (m×n), y,
/// without materialising the logits.
///
/// # Safety
/// Unless NULL, X must point to m*n floats, y to m bytes, theta to n*k
/// floats, out_loss and out_err to doubles.
#[no_mangle]
pub unsafe extern "C" fn sml_softmax_regression_loss_err(
    X: *const f32,
    y: *const c_uchar,
    theta: *const f32,
    m: usize,
    n: usize,
    k: usize,
    out_loss: *mut f64,
    out_err: *mut f64,
) -> sml_status {
    ffi_call(|| {
        check_outs(out_loss, out_err)?;
        check_dims(&[("n", n), ("k", k)])?;
        let x = CArray::new("X", X, m, n)?;
        let y = CArray::new("y", y, m, 1)?;
        let theta = CArray::new("theta", theta, n, k)?;
        // SAFETY: every array is checked; the caller's contract covers the memory.
        unsafe {
            let le = softmax_regression_loss_err(x.view(), y.vector(), theta.view())?;
            write_loss_err(le, out_loss, out_err)
        }
    })
}

/// Loss and error rate of the two-layer network (W1 n×d, W2 d×k) on X, y.
///
/// # Safety
/// Unless NULL, X must point to m*n floats, y to m bytes, W1 to n*d floats,
/// W2 to d*k floats, out_loss and out_err to doubles.
#[no_mangle]
pub unsafe extern "C" fn sml_nn_loss_err(
    X: *const f32,
    y: *const c_uchar,
    W1: *const f32,
    W2: *const f32,
    m: usize,
    n: usize,
    d: usize,
    k: usize,
    out_loss: *mut f64,
    out_err: *mut f64,
) -> sml_status {
    ffi_call(|| {
        check_outs(out_loss, out_err)?;
        check_dims(&[("n", n), ("d", d), ("k", k)])?;
        let x = CArray::new("X", X, m, n)?;
        let y = CArray::new("y", y, m, 1)?;
        let w1 = CArray::new("W1", W1, n, d)?;
        let w2 = CArray::new("W2", W2, d, k)?;
        // SAFETY: every array is checked; the caller's contract covers the memory.
        unsafe {
            let le = nn_loss_err(x.view(), y.vector(), w1.view(), w2.view())?;
            write_loss_err(le, out_loss, out_err)
        }
    })
}

/// Computes the predictions, then copies them to `out` (checked, disjoint
/// from the inputs), so that a refusal writes nothing.
///
/// # Safety
/// `out` must address its m elements, which nothing else uses during the call.
unsafe fn write_predictions(
    out: CArray<'_, u32>,
    predict: impl FnOnce() -> crate::Result<Vec<u32>>,
) -> FfiResult<()> {
    let predictions = predict()?;
    // SAFETY: forwarded to the caller's contract.
    unsafe { out.slice_mut() }.copy_from_slice(&predictions);
    Ok(())
}

/// Predicted class (argmax of X theta) of each of the m rows of X, written
/// to `out` (m entries).
///
/// # Safety
/// Unless NULL, X must point to m*n floats, theta to n*k floats and out to
/// m uint32_t.
#[no_mangle]
pub unsafe extern "C" fn sml_softmax_regression_predict(
    X: *const f32,
    theta: *const f32,
    m: usize,
    n: usize,
    k: usize,
    out: *mut u32,
) -> sml_status {
    ffi_call(|| {
        check_dims(&[("n", n), ("k", k)])?;
        let x = CArray::new("X", X, m, n)?;
        let theta = CArray::new("theta", theta, n, k)?;
        let out = CArray::new_mut("out", out, m, 1)?;
        check_disjoint(out.span(), &[x.span(), theta.span()])?;
        // SAFETY: every array is checked; the caller's contract covers the memory.
        unsafe { write_predictions(out, || softmax_regression_predict(x.view(), theta.view())) }
    })
}

/// Predicted class (argmax of ReLU(X W1) W2) of each of the m rows of X,
/// written to `out` (m entries).
///
/// # Safety
/// Unless NULL, X must point to m*n floats, W1 to n*d floats, W2 to d*k
/// floats and out to m uint32_t.
#[no_mangle]
pub unsafe extern "C" fn sml_nn_predict(
    X: *const f32,
    W1: *const f32,
    W2: *const f32,
    m: usize,
    n: usize,
    d: usize,
    k: usize,
    out: *mut u32,
) -> sml_status {
    ffi_call(|| {
        check_dims(&[("n", n), ("d", d), ("k", k)])?;
        let x = CArray::new("X", X, m, n)?;
        let w1 = CArray::new("W1", W1, n, d)?;
        let w2 = CArray::new("W2", W2, d, k)?;
        let out = CArray::new_mut("out", out, m, 1)?;
        check_disjoint(out.span(), &[x.span(), w1.span(), w2.span()])?;
        // SAFETY: every array is checked; the caller's contract covers the memory.
        unsafe { write_predictions(out, || nn_predict(x.view(), w1.view(), w2.view())) }
    })
}

// ---------------------------------------------------------------------------
// Initial weights and whole training runs.
// ---------------------------------------------------------------------------

/// Writes the course's initial network weights: `np.random.seed(seed);
/// W1 = randn(n, d).astype(float32) / sqrt(d); W2 = randn(d, k).astype(float32) / sqrt(k)`,
/// bit for bit (numpy's legacy MT19937 generator).
///
/// # Safety
/// Unless NULL, W1 must point to n*d floats and W2 to d*k floats.
#[no_mangle]
pub unsafe extern "C" fn sml_nn_init_weights(
    seed: u32,
    n: usize,
    d: usize,
    k: usize,
    W1: *mut f32,
    W2: *mut f32,
) -> sml_status {
    ffi_call(|| {
        check_dims(&[("n", n), ("d", d), ("k", k)])?;
        let w1_out = CArray::new_mut("W1", W1, n, d)?;
        let w2_out = CArray::new_mut("W2", W2, d, k)?;
        check_disjoint(w1_out.span(), &[w2_out.span()])?;
        let (w1, w2) = course_init_weights(seed, n, d, k);
        // SAFETY: both arrays are checked; the caller's contract covers the memory.
        unsafe {
            w1_out.view_mut().assign(&w1);
            w2_out.view_mut().assign(&w2);
        }
        Ok(())
    })
}

/// A labelled data set passed to the training functions: X is m×n
/// row-major floats, y holds m labels. The library only reads it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct sml_data {
    pub X: *const f32,
    pub y: *const c_uchar,
    pub m: usize,
    pub n: usize,
}

/// What one epoch of training achieved, measured after the epoch.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct sml_epoch_report {
    /// Zero-based epoch number.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_err: f64,
    pub test_loss: f64,
    pub test_err: f64,
}

/// Called after every epoch with a report that is valid only during the
/// call, and the caller's `user` pointer. May be NULL.
pub type sml_epoch_callback =
    Option<unsafe extern "C" fn(report: *const sml_epoch_report, user: *mut c_void)>;

/// The checked arrays of an `sml_data` argument named `what` ("train"),
/// whose arrays are named `names` ("train->X", "train->y").
///
/// # Safety
/// `d` must be NULL or point to a readable `sml_data`.
unsafe fn data(
    what: &str,
    names: (&'static str, &'static str),
    d: *const sml_data,
) -> FfiResult<(CArray<'static, f32>, CArray<'static, u8>)> {
    if d.is_null() {
        return Err(status::FfiError::new(
            SML_NULL_POINTER,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: non-NULL, and the caller guarantees it points to an sml_data.
    let d = unsafe { d.read_unaligned() };
    Ok((
        CArray::new(names.0, d.X, d.m, d.n)?,
        CArray::new(names.1, d.y, d.m, 1)?,
    ))
}

/// The four array spans of a training call's data sets.
fn data_spans(
    train: &(CArray<'static, f32>, CArray<'static, u8>),
    test: &(CArray<'static, f32>, CArray<'static, u8>),
) -> [Span<'static>; 4] {
    [train.0.span(), train.1.span(), test.0.span(), test.1.span()]
}

/// A data set's views.
///
/// # Safety
/// As for [`CArray::view`].
unsafe fn data_view<'a>(d: (CArray<'static, f32>, CArray<'static, u8>)) -> Data<'a> {
    // SAFETY: forwarded to the caller's contract.
    unsafe {
        Data {
            x: d.0.view(),
            y: d.1.vector(),
        }
    }
}

/// Called after every epoch like `sml_epoch_callback`, but returns 0 to go
/// on or any other value to end training after this epoch. May be NULL.
pub type sml_epoch_control =
    Option<unsafe extern "C" fn(report: *const sml_epoch_report, user: *mut c_void) -> c_int>;

fn c_report(r: &EpochReport) -> sml_epoch_report {
    sml_epoch_report {
        epoch: r.epoch,
        train_loss: r.train_loss,
        train_err: r.train_err,
        test_loss: r.test_loss,
        test_err: r.test_err,
    }
}

fn reporter(callback: sml_epoch_callback, user: *mut c_void) -> impl FnMut(&EpochReport) {
    move |r: &EpochReport| {
        if let Some(cb) = callback {
            // SAFETY: the caller supplied the callback and its user pointer.
            unsafe { cb(&c_report(r), user) };
        }
    }
}

fn controller(
    control: sml_epoch_control,
    user: *mut c_void,
) -> impl FnMut(&EpochReport) -> ControlFlow<()> {
    move |r: &EpochReport| match control {
        // SAFETY: the caller supplied the callback and its user pointer.
        Some(cb) if unsafe { cb(&c_report(r), user) } != 0 => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    }
}

/// The optional `epochs_run` output of the stoppable training calls, which
/// must not overlap the data.
fn epochs_out(
    epochs_run: *mut usize,
    inputs: &[Span<'static>],
) -> FfiResult<Option<CArray<'static, usize>>> {
    if epochs_run.is_null() {
        return Ok(None);
    }
    let out = CArray::new_mut("epochs_run", epochs_run, 1, 1)?;
    check_disjoint(out.span(), inputs)?;
    Ok(Some(out))
}

/// Checks the arguments of a softmax training call, trains, writes theta
/// and `epochs_run` (unless NULL) only on success.
///
/// # Safety
/// As for `sml_train_softmax`.
unsafe fn train_softmax_c<C: EpochControl>(
    (train, test): (*const sml_data, *const sml_data),
    (k, epochs, lr, batch): (usize, usize, f32, usize),
    theta: *mut f32,
    epochs_run: *mut usize,
    on_epoch: impl FnMut(&EpochReport) -> C,
) -> FfiResult<()> {
    // SAFETY: the caller's contract covers both sml_data.
    let train = unsafe { data("train", ("train->X", "train->y"), train)? };
    let test = unsafe { data("test", ("test->X", "test->y"), test)? };
    let n = train.0.cols();
    check_dims(&[("k", k)])?;
    let out = CArray::new_mut("theta", theta, n, k)?;
    let inputs = data_spans(&train, &test);
    check_disjoint(out.span(), &inputs)?;
    let run_out = epochs_out(epochs_run, &[&inputs[..], &[out.span()]].concat())?;
    let config = SoftmaxConfig {
        epochs,
        sgd: Sgd { lr, batch },
    };
    let mut trained = Array2::<f32>::zeros((n, k));
    // SAFETY: every array is checked; the caller's contract covers the memory.
    unsafe {
        let run = fit_softmax(
            data_view(train),
            data_view(test),
            trained.view_mut(),
            &config,
            on_epoch,
        )?;
        out.view_mut().assign(&trained);
        if let Some(r) = run_out {
            r.view_mut()[[0, 0]] = run;
        }
    }
    Ok(())
}

/// Trains softmax regression from theta = 0 for `epochs` epochs and writes
/// the trained n×k weights to `theta` (only on success). After each epoch
/// the loss and error on `train` and `test` are passed to `callback`.
///
/// # Safety
/// `train` and `test` must point to valid `sml_data`; theta to n*k floats.
#[no_mangle]
pub unsafe extern "C" fn sml_train_softmax(
    train: *const sml_data,
    test: *const sml_data,
    k: usize,
    epochs: usize,
    lr: f32,
    batch: usize,
    theta: *mut f32,
    callback: sml_epoch_callback,
    user: *mut c_void,
) -> sml_status {
    ffi_call(|| {
        // SAFETY: forwarded to the caller's contract.
        unsafe {
            train_softmax_c(
                (train, test),
                (k, epochs, lr, batch),
                theta,
                std::ptr::null_mut(),
                reporter(callback, user),
            )
        }
    })
}

/// `sml_train_softmax` whose callback can end training early: when it
/// returns non-zero, training stops after that epoch and `theta` gets the
/// weights reached so far (early stopping; a user's interrupt). Unless
/// NULL, `*epochs_run` gets the number of epochs trained.
///
/// # Safety
/// As for `sml_train_softmax`; epochs_run NULL or valid for one size_t.
#[no_mangle]
pub unsafe extern "C" fn sml_train_softmax_stoppable(
    train: *const sml_data,
    test: *const sml_data,
    k: usize,
    epochs: usize,
    lr: f32,
    batch: usize,
    theta: *mut f32,
    control: sml_epoch_control,
    user: *mut c_void,
    epochs_run: *mut usize,
) -> sml_status {
    ffi_call(|| {
        // SAFETY: forwarded to the caller's contract.
        unsafe {
            train_softmax_c(
                (train, test),
                (k, epochs, lr, batch),
                theta,
                epochs_run,
                controller(control, user),
            )
        }
    })
}

/// Checks the arguments of a network training call, trains, writes W1, W2
/// and `epochs_run` (unless NULL) only on success.
///
/// # Safety
/// As for `sml_train_nn`.
unsafe fn train_nn_c<C: EpochControl>(
    (train, test): (*const sml_data, *const sml_data),
    (k, hidden, epochs, lr, batch, seed): (usize, usize, usize, f32, usize, u32),
    (W1, W2): (*mut f32, *mut f32),
    epochs_run: *mut usize,
    on_epoch: impl FnMut(&EpochReport) -> C,
) -> FfiResult<()> {
    // SAFETY: the caller's contract covers both sml_data.
    let train = unsafe { data("train", ("train->X", "train->y"), train)? };
    let test = unsafe { data("test", ("test->X", "test->y"), test)? };
    let n = train.0.cols();
    check_dims(&[("n", n), ("hidden", hidden), ("k", k)])?;
    let w1_out = CArray::new_mut("W1", W1, n, hidden)?;
    let w2_out = CArray::new_mut("W2", W2, hidden, k)?;
    let inputs = data_spans(&train, &test);
    check_disjoint(w1_out.span(), &[&inputs[..], &[w2_out.span()]].concat())?;
    check_disjoint(w2_out.span(), &inputs)?;
    let run_out = epochs_out(
        epochs_run,
        &[&inputs[..], &[w1_out.span(), w2_out.span()]].concat(),
    )?;
    let config = NnConfig {
        hidden,
        epochs,
        sgd: Sgd { lr, batch },
        seed,
    };
    let (mut w1, mut w2) = course_init_weights(seed, n, hidden, k);
    // SAFETY: every array is checked; the caller's contract covers the memory.
    unsafe {
        let run = fit_nn(
            data_view(train),
            data_view(test),
            w1.view_mut(),
            w2.view_mut(),
            &config,
            on_epoch,
        )?;
        w1_out.view_mut().assign(&w1);
        w2_out.view_mut().assign(&w2);
        if let Some(r) = run_out {
            r.view_mut()[[0, 0]] = run;
        }
    }
    Ok(())
}

/// Trains the two-layer network with `hidden` units from the course's
/// initial weights for `seed`, and writes the trained W1 (n×hidden) and W2
/// (hidden×k) only on success. After each epoch the loss and error on
/// `train` and `test` are passed to `callback`.
///
/// # Safety
/// `train` and `test` must point to valid `sml_data`; W1 to n*hidden floats
/// and W2 to hidden*k floats.
#[no_mangle]
pub unsafe extern "C" fn sml_train_nn(
    train: *const sml_data,
    test: *const sml_data,
    k: usize,
    hidden: usize,
    epochs: usize,
    lr: f32,
    batch: usize,
    seed: u32,
    W1: *mut f32,
    W2: *mut f32,
    callback: sml_epoch_callback,
    user: *mut c_void,
) -> sml_status {
    ffi_call(|| {
        // SAFETY: forwarded to the caller's contract.
        unsafe {
            train_nn_c(
                (train, test),
                (k, hidden, epochs, lr, batch, seed),
                (W1, W2),
                std::ptr::null_mut(),
                reporter(callback, user),
            )
        }
    })
}

/// `sml_train_nn` whose callback can end training early: when it returns
/// non-zero, training stops after that epoch and W1, W2 get the weights
/// reached so far. Unless NULL, `*epochs_run` gets the number of epochs
/// trained.
///
/// # Safety
/// As for `sml_train_nn`; epochs_run NULL or valid for one size_t.
#[no_mangle]
pub unsafe extern "C" fn sml_train_nn_stoppable(
    train: *const sml_data,
    test: *const sml_data,
    k: usize,
    hidden: usize,
    epochs: usize,
    lr: f32,
    batch: usize,
    seed: u32,
    W1: *mut f32,
    W2: *mut f32,
    control: sml_epoch_control,
    user: *mut c_void,
    epochs_run: *mut usize,
) -> sml_status {
    ffi_call(|| {
        // SAFETY: forwarded to the caller's contract.
        unsafe {
            train_nn_c(
                (train, test),
                (k, hidden, epochs, lr, batch, seed),
                (W1, W2),
                epochs_run,
                controller(control, user),
            )
        }
    })
}

// ---------------------------------------------------------------------------
// MNIST reading into library-owned memory.
// ---------------------------------------------------------------------------

/// An MNIST data set read by `sml_mnist_read`, owned by the library; free it
/// with `sml_dataset_free`. Its arrays are valid until then.
pub struct sml_dataset {
    images: Array2<f32>,
    labels: Array1<u8>,
    rows: usize,
    cols: usize,
}

#[cfg(unix)]
fn path_of(p: &CStr) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    std::path::PathBuf::from(std::ffi::OsStr::from_bytes(p.to_bytes()))
}

#[cfg(not(unix))]
fn path_of(p: &CStr) -> std::path::PathBuf {
    std::path::PathBuf::from(p.to_string_lossy().into_owned())
}

unsafe fn c_path(what: &str, p: *const c_char) -> FfiResult<std::path::PathBuf> {
    if p.is_null() {
        return Err(status::FfiError::new(
            SML_NULL_POINTER,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: non-NULL; the caller guarantees a NUL-terminated string.
    Ok(path_of(unsafe { CStr::from_ptr(p) }))
}

/// Reads an IDX image file and its label file (each gzip-compressed or not)
/// into a new data set stored at `*out`. Pixels are scaled to [0, 1] by
/// dividing by 255. Paths are bytes, not necessarily UTF-8. On failure
/// `*out` is left unchanged; the message names the file and the problem.
///
/// # Safety
/// The paths must be NUL-terminated strings; out must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn sml_mnist_read(
    image_path: *const c_char,
    label_path: *const c_char,
    out: *mut *mut sml_dataset,
) -> sml_status {
    ffi_call(|| {
        check_out("out", out)?;
        // SAFETY: the caller's contract covers the paths and `out`.
        unsafe {
            let image_path = c_path("image_path", image_path)?;
            let label_path = c_path("label_path", label_path)?;
            let images = read_images(&image_path)?;
            let (pixels, labels) = crate::mnist::parse_mnist_pair(images.pixels, &label_path)?;
            let ds = Box::new(sml_dataset {
                images: pixels,
                labels,
                rows: images.rows,
                cols: images.cols,
            });
            write_out("out", out, Box::into_raw(ds))
        }
    })
}

/// Frees a data set from `sml_mnist_read`. NULL is accepted and ignored.
///
/// # Safety
/// `ds` must come from `sml_mnist_read` and not have been freed.
#[no_mangle]
pub unsafe extern "C" fn sml_dataset_free(ds: *mut sml_dataset) {
    if !ds.is_null() {
        // SAFETY: the caller passes a pointer from Box::into_raw, once.
        drop(unsafe { Box::from_raw(ds) });
    }
}

unsafe fn dataset_field<T>(
    ds: *const sml_dataset,
    none: T,
    f: impl FnOnce(&sml_dataset) -> T,
) -> T {
    // SAFETY: NULL is handled; otherwise the caller passes a live data set.
    match unsafe { ds.as_ref() } {
        Some(ds) => f(ds),
        None => none,
    }
}

/// Number of items (images and labels); 0 for NULL.
///
/// # Safety
/// `ds` must be NULL or a live data set.
#[no_mangle]
pub unsafe extern "C" fn sml_dataset_count(ds: *const sml_dataset) -> usize {
    unsafe { dataset_field(ds, 0, |d| d.labels.len()) }
}

/// Pixels per image (rows * cols, the n of X); 0 for NULL.
///
/// # Safety
/// `ds` must be NULL or a live data set.
#[no_mangle]
pub unsafe extern "C" fn sml_dataset_features(ds: *const sml_dataset) -> usize {
    unsafe { dataset_field(ds, 0, |d| d.images.ncols()) }
}

/// Height of one image; 0 for NULL.
///
/// # Safety
/// `ds` must be NULL or a live data set.
#[no_mangle]
pub unsafe extern "C" fn sml_dataset_image_rows(ds: *const sml_dataset) -> usize {
    unsafe { dataset_field(ds, 0, |d| d.rows) }
}

/// Width of one image; 0 for NULL.
///
/// # Safety
/// `ds` must be NULL or a live data set.
#[no_mangle]
pub unsafe extern "C" fn sml_dataset_image_cols(ds: *const sml_dataset) -> usize {
    unsafe { dataset_field(ds, 0, |d| d.cols) }
}

/// The count×features images, row-major, owned by the data set, starting on a
/// 64-byte boundary; NULL for NULL.
///
/// # Safety
/// `ds` must be NULL or a live data set.
#[no_mangle]
pub unsafe extern "C" fn sml_dataset_images(ds: *const sml_dataset) -> *const f32 {
    unsafe { dataset_field(ds, std::ptr::null(), |d| d.images.as_ptr()) }
}

/// The count labels, owned by the data set; NULL for NULL.
///
/// # Safety
/// `ds` must be NULL or a live data set.
#[no_mangle]
pub unsafe extern "C" fn sml_dataset_labels(ds: *const sml_dataset) -> *const c_uchar {
    unsafe { dataset_field(ds, std::ptr::null(), |d| d.labels.as_ptr()) }
}

/// The images of `sml_dataset_images`, writable: the caller may change them
/// (to normalise in place, say) while it holds the data set, which still
/// owns them; NULL for NULL. This lets a wrapper hand the library's arrays
/// out as its own (the Python package's `parse_mnist` returns numpy arrays
/// over them) instead of copying them.
///
/// # Safety
/// `ds` must be NULL or a live data set, not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn sml_dataset_images_mut(ds: *mut sml_dataset) -> *mut f32 {
    // SAFETY: NULL is handled; otherwise the caller passes a live data set
    // that nothing else uses meanwhile.
    match unsafe { ds.as_mut() } {
        Some(ds) => ds.images.as_mut_ptr(),
        None => std::ptr::null_mut(),
    }
}

/// The labels of `sml_dataset_labels`, writable, as
/// `sml_dataset_images_mut`; NULL for NULL.
///
/// # Safety
/// `ds` must be NULL or a live data set, not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn sml_dataset_labels_mut(ds: *mut sml_dataset) -> *mut c_uchar {
    // SAFETY: as in sml_dataset_images_mut.
    match unsafe { ds.as_mut() } {
        Some(ds) => ds.labels.as_mut_ptr(),
        None => std::ptr::null_mut(),
    }
}

// ---------------------------------------------------------------------------
// Errors and version.
// ---------------------------------------------------------------------------

/// Copies the calling thread's last error message, NUL-terminated, into
/// `buf` (`len` bytes). The message is empty after a successful call. In a
/// thread whose storage is being torn down (a C `atexit` handler, a
/// thread-exit destructor), where no message can be kept, every call still
/// returns its status and this gives a fixed note saying so.
/// `*out_len` (if not NULL) receives the bytes needed including the NUL.
/// Returns `SML_BUFFER_TOO_SMALL` when `len` is smaller than that (the
/// buffer then holds as much as fits, NUL-terminated, if `len > 0`), or
/// `SML_NULL_POINTER` when `buf` is NULL and `len > 0`. Does not change the
/// last error.
///
/// # Safety
/// `buf` must be valid for `len` bytes of writes; out_len NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn sml_last_error_message(
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> sml_status {
    status::with_last_error(|message| {
        let needed = message.len() + 1;
        if !out_len.is_null() {
            // SAFETY: non-NULL and the caller guarantees validity.
            unsafe { out_len.write_unaligned(needed) };
        }
        if len == 0 {
            return SML_BUFFER_TOO_SMALL;
        }
        if buf.is_null() {
            return SML_NULL_POINTER;
        }
        let copy = message.len().min(len - 1);
        // SAFETY: buf holds len > copy bytes; the message is ours and does
        // not overlap the caller's buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(message.as_ptr(), buf.cast::<u8>(), copy);
            buf.add(copy).write(0);
        }
        if copy < message.len() {
            SML_BUFFER_TOO_SMALL
        } else {
            SML_OK
        }
    })
}

/// A static, NUL-terminated name for a status ("SML_OK", ...;
/// "SML_UNKNOWN_STATUS" for other values). Never free it.
#[no_mangle]
pub extern "C" fn sml_status_str(status: sml_status) -> *const c_char {
    status::as_c_str(status::status_str(status))
}

/// The library's version, "MAJOR.MINOR.PATCH", a static string. Never free it.
#[no_mangle]
pub extern "C" fn sml_version() -> *const c_char {
    status::as_c_str(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes())
}

/// Sets how many threads each call may use; 0 restores the default (the
/// `SML_NUM_THREADS` environment variable — a number, or `all` — else every
/// available core).
/// Results do not depend on it: every split is over fixed blocks combined in
/// a fixed order. A softmax-regression epoch has two such blocks, so it uses
/// at most two threads; `sml_mnist_read` inflates on one thread and converts
/// on a second unless this is 1. Process-wide; safe to call at any time.
#[no_mangle]
pub extern "C" fn sml_set_num_threads(threads: usize) {
    crate::parallel::set_num_threads(threads);
}

/// How many threads each call may use (at least 1).
#[no_mangle]
pub extern "C" fn sml_num_threads() -> usize {
    crate::parallel::num_threads()
}

/// The kernels' code path on this CPU: "avx512", "avx2" or "portable"
/// (chosen at run time; `SML_SIMD=avx2` or `portable` in the environment
/// lowers it). A static string; never free it.
#[no_mangle]
pub extern "C" fn sml_simd_level() -> *const c_char {
    status::as_c_str(match crate::simd::simd_level() {
        crate::simd::SimdLevel::Avx512 => b"avx512\0",
        crate::simd::SimdLevel::Avx2 => b"avx2\0",
        crate::simd::SimdLevel::Portable => b"portable\0",
    })
}

/// Panics deliberately inside an export and returns what the boundary makes
/// of it (`SML_PANIC`, with the message in `sml_last_error_message`). For
/// tests that prove a panic never unwinds into the caller; never needed
/// otherwise.
#[no_mangle]
pub extern "C" fn sml_test_panic() -> sml_status {
    ffi_call(|| panic!("sml_test_panic was called"))
}
