//! Reading MNIST: IDX image and label files, gzip-compressed or not.
//!
//! The reader trusts nothing in a file. Every size in a header is checked
//! against the bytes actually present before memory is reserved for it, so a
//! 60-byte file that claims 2^30 images costs 60 bytes, not 750 GiB.

use std::borrow::Cow;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use byteorder::{BigEndian, ByteOrder};
use flate2::read::MultiGzDecoder;
use ndarray::{s, Array1, Array2};

use crate::aligned::line_start;
use crate::error::{Error, IdxError, IdxErrorKind, Result};

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IMAGE_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const LABEL_MAGIC: u32 = 0x0000_0801;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Deflate cannot expand its input by more than about 1032:1, so a gzip
/// stream of `c` bytes can back at most `c * 1032` bytes of output.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// MNIST images: `count × (rows·cols)` pixels scaled to [0, 1].
#[derive(Debug, Clone)]
pub struct Images {
    /// One row per image, pixels row-major, each `byte / 255.0`.
    pub pixels: Array2<f32>,
    /// Height of one image.
    pub rows: usize,
    /// Width of one image.
    pub cols: usize,
}

/// Reads images and labels and checks that they describe the same items —
/// the course's `parse_mnist`.
///
/// Returns `X` (count × rows·cols, f32 in [0, 1]) and `y` (count, u8).
pub fn parse_mnist(
    image_path: impl AsRef<Path>,
    label_path: impl AsRef<Path>,
) -> Result<(Array2<f32>, Array1<u8>)> {
    let images = read_images(image_path)?;
    parse_mnist_pair(images.pixels, label_path.as_ref())
}

/// Reads the labels for already-read images and checks the counts agree.
pub(crate) fn parse_mnist_pair(
    pixels: Array2<f32>,
    label_path: &Path,
) -> Result<(Array2<f32>, Array1<u8>)> {
    let labels = read_labels(label_path)?;
    if pixels.nrows() != labels.len() {
        return Err(Error::Idx(IdxError {
            path: label_path.to_path_buf(),
            kind: IdxErrorKind::CountMismatch {
                images: pixels.nrows(),
                labels: labels.len(),
            },
        }));
    }
    Ok((pixels, labels))
}

/// Reads an IDX image file (magic 0x00000803), gzip-compressed or not.
pub fn read_images(path: impl AsRef<Path>) -> Result<Images> {
    let path = path.as_ref();
    read_image_file(path).map_err(|kind| at(path, kind))
}

/// [`read_images`] without the path in the error. A gzip file is inflated
/// and converted to floats at once, by two threads (see [`inflate_images`]).
fn read_image_file(path: &Path) -> std::result::Result<Images, IdxErrorKind> {
    match open_idx(path, IMAGE_MAGIC)? {
        Opened::Gzip(stream, size) => inflate_images(stream, size),
        Opened::Plain(idx) => Ok(idx.into_images()),
    }
}

/// Pixel value `byte / 255` (division rather than a multiplication by
/// 1/255: the reciprocal is inexact and changes 126 of the 256 possible
/// values by one ulp, which the course's norm checks at rtol 1e-7 notice).
fn pixel(byte: u8) -> f32 {
    f32::from(byte) / 255.0
}

/// The pixels after the first `pad` of `v` as `count` rows of `row`: an
/// array that keeps `v` whole and starts `pad` floats into it.
fn pixel_rows(v: Vec<f32>, pad: usize, (count, row): (usize, usize)) -> Array2<f32> {
    Array1::from_vec(v)
        .slice_move(s![pad..])
        .into_shape_with_order((count, row))
        .expect("body length was checked against the header")
}

/// Asks Linux to back the spare capacity of `v` with 2 MiB pages where it
/// can (transparent huge pages in `madvise` mode): filling 188 MB of fresh
/// 4 KiB pages costs ~46,000 page faults. Elsewhere, or if refused, nothing
/// changes.
#[allow(unsafe_code)] // one madvise call on memory this Vec owns
fn advise_huge_pages(v: &mut Vec<f32>) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let spare = v.spare_capacity_mut();
        let start = spare.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(spare);
        let (first, last) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
        if last > first {
            // SAFETY: [first, last) lies inside the Vec's own allocation;
            // MADV_HUGEPAGE only changes how the kernel backs those pages,
            // never their contents or validity. A failure is harmless.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// Bytes inflated at a time by [`inflate_images`].
const INFLATE_CHUNK: usize = 1 << 20;

/// Reads `body` to its end in chunks of [`INFLATE_CHUNK`] bytes, each into a
/// buffer from `empty` and handed to `full` (which answers whether to go
/// on); stops early when either has nothing more. Returns the bytes read.
fn read_chunks(
    body: &mut impl Read,
    mut empty: impl FnMut() -> Option<Vec<u8>>,
    mut full: impl FnMut(Vec<u8>) -> bool,
) -> std::io::Result<u64> {
    let mut total = 0u64;
    while let Some(mut chunk) = empty() {
        chunk.resize(INFLATE_CHUNK, 0);
        let n = read_up_to(body, &mut chunk)?;
        if n == 0 {
            break;
        }
        chunk.truncate(n);
        total += n as u64;
        if !full(chunk) {
            break;
        }
    }
    Ok(total)
}

/// Reads an IDX image file from gzip data of (at most) `compressed_len`
/// bytes, with the same checks and bounds as [`inflate_idx`]: this thread
/// inflates chunk after chunk while a second converts each to floats
/// (touching the fresh output pages, a third of the work) as it arrives —
/// unless the library is set to one thread ([`crate::num_threads`]).
fn inflate_images(
    compressed: impl Read,
    compressed_len: u64,
) -> std::result::Result<Images, IdxErrorKind> {
    use std::sync::mpsc::sync_channel;
    let mut stream = MultiGzDecoder::new(compressed);
    let mut header = vec![0u8; header_len(IMAGE_MAGIC)];
    let found = read_up_to(&mut stream, &mut header).map_err(IdxErrorKind::Gzip)?;
    let dims = parse_header(&header[..found], IMAGE_MAGIC)?;
    let expected = body_len(&dims)?;
    let bound = compressed_len.saturating_mul(MAX_DEFLATE_RATIO);
    // At most as many bytes reserved as the byte body could get.
    let (mut pixels, pad) = line_start(expected.min(bound / 4) as usize);
    advise_huge_pages(&mut pixels);
    // Ask for one byte more than declared so that trailing data is noticed.
    let mut body = stream.take(expected + 1);
    // A byte past the declared body is an error found below; it is not
    // converted (which could make the full-size vector grow).
    let convert = |pixels: &mut Vec<f32>, chunk: &[u8]| {
        let room = (expected as usize).saturating_sub(pixels.len() - pad);
        pixels.extend(chunk[..chunk.len().min(room)].iter().map(|&b| pixel(b)));
    };
    // Two threads unless the library is set to one, or the second cannot
    // be started (then nothing has been read yet, and one thread does all).
    let mut inflated = None;
    if crate::parallel::num_threads() >= 2 {
        let (full_tx, full_rx) = sync_channel::<Vec<u8>>(2);
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(3);
        for _ in 0..3 {
            empty_tx.send(Vec::new()).expect("the receiver is here");
        }
        let (pixels, body) = (&mut pixels, &mut body);
        inflated = std::thread::scope(|s| {
            let converter = crate::parallel::spawn_scoped(s, move || {
                for chunk in full_rx {
                    convert(pixels, &chunk);
                    // The inflater may have finished and gone: nothing to return.
                    let _ = empty_tx.send(chunk);
                }
            });
            converter.ok()?;
            let result = read_chunks(
                body,
                || empty_rx.recv().ok(),
                |chunk| full_tx.send(chunk).is_ok(),
            );
            // The converter ends with the channel; the scope waits for it.
            drop(full_tx);
            Some(result)
        });
    }
    let inflated = inflated.unwrap_or_else(|| {
        let spare = std::cell::Cell::new(Some(Vec::new()));
        read_chunks(
            &mut body,
            || spare.take(),
            |chunk| {
                convert(&mut pixels, &chunk);
                spare.set(Some(chunk));
                true
            },
        )
    });
    let total = inflated.map_err(IdxErrorKind::Gzip)?;
    check_body_len(expected, total)?;
    let (count, rows, cols) = (dims[0] as usize, dims[1] as usize, dims[2] as usize);
    let pixels = pixel_rows(pixels, pad, (count, rows * cols));
    Ok(Images { pixels, rows, cols })
}

/// Reads an IDX label file (magic 0x00000801), gzip-compressed or not.
pub fn read_labels(path: impl AsRef<Path>) -> Result<Array1<u8>> {
    let path = path.as_ref();
    let idx = read_idx(path, LABEL_MAGIC).map_err(|kind| at(path, kind))?;
    Ok(idx.into_labels())
}

/// Decodes the bytes of an IDX image file held in memory.
pub fn decode_images(bytes: &[u8]) -> std::result::Result<Images, IdxErrorKind> {
    Ok(decode_idx(bytes, IMAGE_MAGIC)?.into_images())
}

/// Decodes the bytes of an IDX label file held in memory.
pub fn decode_labels(bytes: &[u8]) -> std::result::Result<Array1<u8>, IdxErrorKind> {
    Ok(decode_idx(bytes, LABEL_MAGIC)?.into_labels())
}

/// An IDX file whose body holds exactly the bytes its header declares.
struct Idx<'a> {
    dims: Vec<u32>,
    body: Cow<'a, [u8]>,
}

impl Idx<'_> {
    fn into_images(self) -> Images {
        let (count, rows, cols) = (
            self.dims[0] as usize,
            self.dims[1] as usize,
            self.dims[2] as usize,
        );
        let (mut pixels, pad) = line_start(self.body.len());
        pixels.extend(self.body.iter().map(|&b| pixel(b)));
        let pixels = pixel_rows(pixels, pad, (count, rows * cols));
        Images { pixels, rows, cols }
    }

    fn into_labels(self) -> Array1<u8> {
        Array1::from_vec(self.body.into_owned())
    }
}

fn at(path: &Path, kind: IdxErrorKind) -> Error {
    Error::Idx(IdxError {
        path: path.to_path_buf(),
        kind,
    })
}

/// Reads an IDX file (possibly gzip-compressed) from disk, no further than
/// its checks need. A regular file's size bounds what it holds, but a FIFO or
/// a device such as `/dev/zero` produces bytes without end, so the file is
/// never read whole: an uncompressed body is read up to one byte past what
/// the header declares, and compressed data is inflated as it is read.
fn read_idx(path: &Path, magic: u32) -> std::result::Result<Idx<'static>, IdxErrorKind> {
    match open_idx(path, magic)? {
        Opened::Gzip(stream, size) => inflate_idx(stream, size, magic),
        Opened::Plain(idx) => Ok(idx),
    }
}

/// An IDX file as [`open_idx`] finds it.
enum Opened {
    /// Gzip data (from its first byte) and the file's size (0 for a FIFO or
    /// a device).
    Gzip(Box<dyn Read>, u64),
    /// An uncompressed file, read and checked.
    Plain(Idx<'static>),
}

/// Opens an IDX file and reads its header: gzip data is handed back to be
/// inflated, an uncompressed body is read (see [`read_idx`]).
fn open_idx(path: &Path, magic: u32) -> std::result::Result<Opened, IdxErrorKind> {
    let mut file = File::open(path).map_err(IdxErrorKind::Io)?;
    // Devices and FIFOs report 0 here: they get no reservation up front.
    let size = file.metadata().map_err(IdxErrorKind::Io)?.len();
    let mut header = Vec::new();
    (&mut file)
        .take(header_len(magic) as u64)
        .read_to_end(&mut header)
        .map_err(IdxErrorKind::Io)?;
    if header.starts_with(&GZIP_MAGIC) {
        return Ok(Opened::Gzip(
            Box::new(std::io::Cursor::new(header).chain(file)),
            size,
        ));
    }
    let dims = parse_header(&header, magic)?;
    let expected = body_len(&dims)?;
    let mut body = Vec::with_capacity(expected.min(size) as usize);
    // Ask for one byte more than declared so that trailing data is noticed.
    file.take(expected + 1)
        .read_to_end(&mut body)
        .map_err(IdxErrorKind::Io)?;
    check_body_len(expected, body.len() as u64)?;
    Ok(Opened::Plain(Idx {
        dims,
        body: Cow::Owned(body),
    }))
}

/// Splits an IDX file (possibly gzip-compressed) held in memory into its
/// dimensions and a body of exactly the length they declare.
fn decode_idx(bytes: &[u8], magic: u32) -> std::result::Result<Idx<'_>, IdxErrorKind> {
    if bytes.starts_with(&GZIP_MAGIC) {
        return inflate_idx(bytes, bytes.len() as u64, magic);
    }
    let header_len = header_len(magic);
    let dims = parse_header(&bytes[..header_len.min(bytes.len())], magic)?;
    let expected = body_len(&dims)?;
    let body = &bytes[header_len..];
    check_body_len(expected, body.len() as u64)?;
    Ok(Idx {
        dims,
        body: Cow::Borrowed(body),
    })
}

/// Inflates an IDX file from gzip data of (at most) `compressed_len` bytes,
/// every member in turn, reading no more than the header and one byte past
/// the body it declares.
fn inflate_idx(
    compressed: impl Read,
    compressed_len: u64,
    magic: u32,
) -> std::result::Result<Idx<'static>, IdxErrorKind> {
    let mut stream = MultiGzDecoder::new(compressed);
    let mut header = vec![0u8; header_len(magic)];
    let found = read_up_to(&mut stream, &mut header).map_err(IdxErrorKind::Gzip)?;
    let dims = parse_header(&header[..found], magic)?;
    let expected = body_len(&dims)?;
    let bound = compressed_len.saturating_mul(MAX_DEFLATE_RATIO);
    let mut body = Vec::with_capacity(expected.min(bound) as usize);
    // Ask for one byte more than declared so that trailing data is noticed.
    stream
        .take(expected + 1)
        .read_to_end(&mut body)
        .map_err(IdxErrorKind::Gzip)?;
    check_body_len(expected, body.len() as u64)?;
    Ok(Idx {
        dims,
        body: Cow::Owned(body),
    })
}

/// Bytes of the header: the magic number and one word per dimension, the
/// number of dimensions being the magic's low byte.
fn header_len(magic: u32) -> usize {
    4 + 4 * (magic & 0xff) as usize
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_up_to(stream: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn parse_header(header: &[u8], magic: u32) -> std::result::Result<Vec<u32>, IdxErrorKind> {
    let needed = header_len(magic);
    if header.len() < needed {
        return Err(IdxErrorKind::TruncatedHeader {
            needed,
            found: header.len(),
        });
    }
    // IDX headers are big-endian 32-bit words.
    let word = |i: usize| BigEndian::read_u32(&header[4 * i..4 * i + 4]);
    let found = word(0);
    if found != magic {
        return Err(IdxErrorKind::BadMagic {
            expected: magic,
            found,
        });
    }
    let dims: Vec<u32> = (1..needed / 4).map(word).collect();
    if dims.contains(&0) {
        return Err(IdxErrorKind::ZeroDimension { dims });
    }
    Ok(dims)
}

/// Bytes of body the dimensions declare, refused when the decoded images
/// (4 bytes a pixel) could not be addressed.
fn body_len(dims: &[u32]) -> std::result::Result<u64, IdxErrorKind> {
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .filter(|&n| n.checked_mul(4).is_some_and(|b| b <= isize::MAX as u64))
        .ok_or_else(|| IdxErrorKind::TooLarge {
            dims: dims.to_vec(),
        })
}

fn check_body_len(expected: u64, found: u64) -> std::result::Result<(), IdxErrorKind> {
    if found < expected {
        Err(IdxErrorKind::TruncatedBody { expected, found })
    } else if found > expected {
        Err(IdxErrorKind::TrailingData { expected })
    } else {
        Ok(())
    }
}

/// The four MNIST files in a directory, as the course names them.
#[derive(Debug, Clone)]
pub struct MnistPaths {
    pub train_images: PathBuf,
    pub train_labels: PathBuf,
    pub test_images: PathBuf,
    pub test_labels: PathBuf,
}

impl MnistPaths {
    /// `train-images-idx3-ubyte.gz` and its siblings inside `dir`.
    pub fn in_dir(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        MnistPaths {
            train_images: dir.join("train-images-idx3-ubyte.gz"),
            train_labels: dir.join("train-labels-idx1-ubyte.gz"),
            test_images: dir.join("t10k-images-idx3-ubyte.gz"),
            test_labels: dir.join("t10k-labels-idx1-ubyte.gz"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A gzip-compressed IDX image file of `count` images of 28×28 bytes.
    fn gzip_images(count: u32) -> Vec<u8> {
        let mut raw = Vec::new();
        for v in [IMAGE_MAGIC, count, 28, 28] {
            raw.extend_from_slice(&v.to_be_bytes());
        }
        raw.extend((0..count as usize * 784).map(|i| (i * 31 % 256) as u8));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).expect("in memory");
        gz.finish().expect("in memory")
    }

    #[test]
    fn images_are_read_on_one_thread_when_a_second_cannot_start() {
        let gz = gzip_images(3000);
        let both = inflate_images(&gz[..], gz.len() as u64).expect("valid");
        let (alone, refused) = crate::parallel::with_spawn_limit(0, || {
            inflate_images(&gz[..], gz.len() as u64).expect("valid")
        });
        if crate::parallel::num_threads() >= 2 {
            assert_eq!(refused, 1, "the converter thread was asked for");
        }
        assert_eq!(alone.pixels.dim(), (3000, 784));
        assert_eq!(alone.pixels, both.pixels);
        assert_eq!(alone.pixels[[1, 5]], pixel((789 * 31 % 256) as u8));
    }
}
