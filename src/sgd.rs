//! What both SGD epochs share: argument checks and the minibatch schedule.

use std::ops::Range;

use ndarray::ArrayView1;

use crate::error::{Error, Result};

/// Minibatch SGD settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    /// Learning rate; must be finite.
    pub lr: f32,
    /// Rows per minibatch; must be positive.
    pub batch: usize,
}

impl Sgd {
    /// Refuses a non-finite learning rate or a zero batch.
    pub fn check(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::InvalidArgument("batch must be positive".into()));
        }
        if !self.lr.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "learning rate must be finite, got {}",
                self.lr
            )));
        }
        Ok(())
    }
}

/// Row ranges of the minibatches of an epoch over `m` rows: in order, no
/// shuffling. When `batch` does not divide `m` the last, partial batch is
/// kept (its gradient is divided by its own size, as the course's later
/// DataLoader does) rather than dropped as `range(m // batch)` would.
pub fn minibatches(m: usize, batch: usize) -> impl Iterator<Item = Range<usize>> {
    assert!(batch > 0, "batch must be positive");
    (0..m)
        .step_by(batch)
        .map(move |start| start..m.min(start + batch))
}

/// Refuses a label that is not below `classes`, naming the first one.
pub fn check_labels(y: ArrayView1<'_, u8>, classes: usize) -> Result<()> {
    if classes == 0 {
        return Err(Error::InvalidArgument(
            "the number of classes must be positive".into(),
        ));
    }
    // Scanning for the maximum first keeps the common, valid case branch-free.
    let max = y.iter().copied().max().unwrap_or(0);
    if usize::from(max) < classes {
        return Ok(());
    }
    let (index, &label) = y
        .iter()
        .enumerate()
        .find(|(_, &l)| usize::from(l) >= classes)
        .expect("the maximum label is out of range");
    Err(Error::LabelOutOfRange {
        index,
        label,
        classes,
    })
}

/// Refuses an input whose row count differs from the number of labels.
pub fn check_rows(what: &str, rows: usize, labels: usize) -> Result<()> {
    if rows != labels {
        return Err(Error::ShapeMismatch(format!(
            "{what} has {rows} rows but there are {labels} labels"
        )));
    }
    Ok(())
}

/// Refuses an empty input where a mean over rows is asked for.
pub fn check_nonempty(what: &str, rows: usize) -> Result<()> {
    if rows == 0 {
        return Err(Error::InvalidArgument(format!(
            "{what} has no rows: the mean over zero rows is undefined"
        )));
    }
    Ok(())
}

/// Refuses a zero dimension.
pub fn check_positive(what: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::InvalidArgument(format!("{what} must be positive")));
    }
    Ok(())
}

/// Refuses a weight matrix whose shape is not `rows × cols`.
pub fn check_shape(what: &str, shape: (usize, usize), rows: usize, cols: usize) -> Result<()> {
    if shape != (rows, cols) {
        return Err(Error::ShapeMismatch(format!(
            "{what} is {}x{} but must be {rows}x{cols}",
            shape.0, shape.1
        )));
    }
    Ok(())
}
