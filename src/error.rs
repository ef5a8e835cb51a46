//! Error types of the safe core. The C layer maps each variant to a stable
//! `sml_status` number; Python maps those numbers to exceptions.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong in the library.
#[derive(Debug)]
pub enum Error {
    /// A size, batch, learning rate or other scalar argument is not acceptable.
    InvalidArgument(String),
    /// Two arrays' shapes disagree (for example `theta` is not n×k for an m×n `X`).
    ShapeMismatch(String),
    /// A label is not below the number of classes.
    LabelOutOfRange {
        /// Row of the first offending label.
        index: usize,
        /// The label found there.
        label: u8,
        /// Number of classes (columns of the output layer).
        classes: usize,
    },
    /// Reading an IDX (MNIST) file failed.
    Idx(IdxError),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(msg) | Error::ShapeMismatch(msg) => f.write_str(msg),
            Error::LabelOutOfRange {
                index,
                label,
                classes,
            } => write!(
                f,
                "label {label} at row {index} is out of range for {classes} classes"
            ),
            Error::Idx(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Idx(e) => Some(e),
            _ => None,
        }
    }
}

impl From<IdxError> for Error {
    fn from(e: IdxError) -> Self {
        Error::Idx(e)
    }
}

/// A failure to read one IDX file, naming the file.
#[derive(Debug)]
pub struct IdxError {
    /// The file being read (empty when reading from memory).
    pub path: PathBuf,
    /// What is wrong with it.
    pub kind: IdxErrorKind,
}

/// What is wrong with an IDX file.
#[derive(Debug)]
pub enum IdxErrorKind {
    /// The file could not be opened or read (missing, a directory, no permission, ...).
    Io(std::io::Error),
    /// The gzip stream is corrupt.
    Gzip(std::io::Error),
    /// The file ends before the header does.
    TruncatedHeader { needed: usize, found: usize },
    /// The magic number is not the one for this kind of file.
    BadMagic { expected: u32, found: u32 },
    /// A dimension in the header is zero.
    ZeroDimension { dims: Vec<u32> },
    /// The header's dimensions multiply to more bytes than this platform can address.
    TooLarge { dims: Vec<u32> },
    /// The body holds fewer bytes than the header declares.
    TruncatedBody { expected: u64, found: u64 },
    /// The body holds more bytes than the header declares.
    TrailingData { expected: u64 },
    /// The image and label files disagree on the number of items.
    CountMismatch { images: usize, labels: usize },
}

impl IdxErrorKind {
    /// True for failures of the file system rather than of the file's content.
    pub fn is_io(&self) -> bool {
        matches!(self, IdxErrorKind::Io(_))
    }
}

impl fmt::Display for IdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path.display())?;
        match &self.kind {
            IdxErrorKind::Io(e) => write!(f, "cannot read file: {e}"),
            IdxErrorKind::Gzip(e) => write!(f, "corrupt gzip data: {e}"),
            IdxErrorKind::TruncatedHeader { needed, found } => write!(
                f,
                "truncated IDX header: needed {needed} bytes, found {found}"
            ),
            IdxErrorKind::BadMagic { expected, found } => write!(
                f,
                "bad IDX magic number 0x{found:08x} (expected 0x{expected:08x})"
            ),
            IdxErrorKind::ZeroDimension { dims } => {
                write!(f, "IDX header has a zero dimension {dims:?}")
            }
            IdxErrorKind::TooLarge { dims } => {
                write!(f, "IDX header dimensions {dims:?} are too large")
            }
            IdxErrorKind::TruncatedBody { expected, found } => write!(
                f,
                "truncated IDX data: header declares {expected} bytes, file holds {found}"
            ),
            IdxErrorKind::TrailingData { expected } => write!(
                f,
                "trailing bytes after the {expected} bytes of data the IDX header declares"
            ),
            IdxErrorKind::CountMismatch { images, labels } => write!(
                f,
                "image file holds {images} images but label file holds {labels} labels"
            ),
        }
    }
}

impl std::error::Error for IdxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            IdxErrorKind::Io(e) | IdxErrorKind::Gzip(e) => Some(e),
            _ => None,
        }
    }
}
