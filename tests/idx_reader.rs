//! The IDX/gzip reader against hostile input.
//!
//! Every case checks the exact outcome: the decoded values for a valid file,
//! or the exact `IdxErrorKind` (with its numbers) for a broken one. Outcomes
//! are compared with a slow, obvious reference parser written here, and gzip
//! input with a full decompression by flate2's `MultiGzDecoder`. Reads through
//! the file system also check that the error names the file.
//!
//! `memory_is_bounded_by_the_data_present` re-runs this test binary in a child
//! process under an address-space limit, so that a header-sized allocation
//! would abort the child instead of passing unnoticed.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use proptest::prelude::*;
use proptest::sample::Index;
use simple_ml::mnist::{decode_images, decode_labels, IMAGE_MAGIC, LABEL_MAGIC};
use simple_ml::{parse_mnist, read_images, read_labels, Error, IdxErrorKind, Images};

// ---------------------------------------------------------------------------
// Building files

/// An IDX file: magic, big-endian dimensions, body — nothing checked.
fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// A valid image file of `count` images of `rows × cols` pixels.
fn image_file(count: u32, rows: u32, cols: u32, seed: u8) -> Vec<u8> {
    let n = (count * rows * cols) as usize;
    let body: Vec<u8> = (0..n)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed))
        .collect();
    idx(IMAGE_MAGIC, &[count, rows, cols], &body)
}

fn label_file(labels: &[u8]) -> Vec<u8> {
    idx(LABEL_MAGIC, &[labels.len() as u32], labels)
}

fn gzip_level(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::new(level));
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    gzip_level(bytes, 6)
}

/// A fresh, empty directory for one test (tests run in parallel).
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("idx_reader")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: impl AsRef<OsStr>, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name.as_ref());
    std::fs::write(&path, bytes).unwrap();
    path
}

// ---------------------------------------------------------------------------
// Outcomes: what a read produced, in a form that compares exactly

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Images {
        count: usize,
        rows: usize,
        cols: usize,
        pixels: Vec<f32>,
    },
    Labels(Vec<u8>),
    Io(std::io::ErrorKind),
    Gzip,
    TruncatedHeader {
        needed: usize,
        found: usize,
    },
    BadMagic {
        expected: u32,
        found: u32,
    },
    ZeroDimension(Vec<u32>),
    TooLarge(Vec<u32>),
    TruncatedBody {
        expected: u64,
        found: u64,
    },
    TrailingData {
        expected: u64,
    },
    CountMismatch {
        images: usize,
        labels: usize,
    },
}

impl Outcome {
    fn is_ok(&self) -> bool {
        matches!(self, Outcome::Images { .. } | Outcome::Labels(_))
    }

    /// An error about the content of a file (not the file system, not a pair).
    fn is_content_error(&self) -> bool {
        !self.is_ok() && !matches!(self, Outcome::Io(_) | Outcome::CountMismatch { .. })
    }
}

fn kind_outcome(kind: &IdxErrorKind) -> Outcome {
    match kind {
        IdxErrorKind::Io(e) => Outcome::Io(e.kind()),
        IdxErrorKind::Gzip(_) => Outcome::Gzip,
        &IdxErrorKind::TruncatedHeader { needed, found } => {
            Outcome::TruncatedHeader { needed, found }
        }
        &IdxErrorKind::BadMagic { expected, found } => Outcome::BadMagic { expected, found },
        IdxErrorKind::ZeroDimension { dims } => Outcome::ZeroDimension(dims.clone()),
        IdxErrorKind::TooLarge { dims } => Outcome::TooLarge(dims.clone()),
        &IdxErrorKind::TruncatedBody { expected, found } => {
            Outcome::TruncatedBody { expected, found }
        }
        &IdxErrorKind::TrailingData { expected } => Outcome::TrailingData { expected },
        &IdxErrorKind::CountMismatch { images, labels } => {
            Outcome::CountMismatch { images, labels }
        }
    }
}

fn images_outcome(images: &Images) -> Outcome {
    assert_eq!(
        images.pixels.ncols(),
        images.rows * images.cols,
        "a row holds one image"
    );
    // Whole cache lines for the kernels' 16-pixel loads (src/mnist.rs).
    assert!(images.pixels.is_standard_layout());
    assert_eq!(
        images.pixels.as_ptr() as usize % 64,
        0,
        "pixels start a cache line"
    );
    Outcome::Images {
        count: images.pixels.nrows(),
        rows: images.rows,
        cols: images.cols,
        pixels: images.pixels.iter().copied().collect(),
    }
}

fn decoded_images(bytes: &[u8]) -> Outcome {
    match decode_images(bytes) {
        Ok(images) => images_outcome(&images),
        Err(kind) => kind_outcome(&kind),
    }
}

fn decoded_labels(bytes: &[u8]) -> Outcome {
    match decode_labels(bytes) {
        Ok(labels) => Outcome::Labels(labels.to_vec()),
        Err(kind) => kind_outcome(&kind),
    }
}

/// The outcome of a read through the file system; an error must be an
/// `Error::Idx` for `path` whose message starts with the path.
fn file_outcome<T>(
    result: Result<T, Error>,
    path: &Path,
    ok: impl FnOnce(T) -> Outcome,
) -> Outcome {
    match result {
        Ok(v) => ok(v),
        Err(Error::Idx(e)) => {
            assert_eq!(e.path, path, "the error names the file read");
            let message = e.to_string();
            let name = path.display().to_string();
            assert!(
                message.starts_with(&format!("{name}: ")),
                "{message:?} does not start with the path {name:?}"
            );
            kind_outcome(&e.kind)
        }
        Err(other) => panic!("not an IDX error: {other:?}"),
    }
}

fn read_images_outcome(path: &Path) -> Outcome {
    file_outcome(read_images(path), path, |i| images_outcome(&i))
}

fn read_labels_outcome(path: &Path) -> Outcome {
    file_outcome(read_labels(path), path, |l| Outcome::Labels(l.to_vec()))
}

// ---------------------------------------------------------------------------
// The reference: an obvious parser of uncompressed IDX bytes

/// What reading `plain` (uncompressed) as an IDX file with `magic` must give.
fn reference(plain: &[u8], magic: u32) -> Outcome {
    let ndims = (magic & 0xff) as usize;
    let needed = 4 + 4 * ndims;
    if plain.len() < needed {
        return Outcome::TruncatedHeader {
            needed,
            found: plain.len(),
        };
    }
    let words: Vec<u32> = plain[..needed]
        .chunks(4)
        .map(|w| u32::from_be_bytes(w.try_into().unwrap()))
        .collect();
    if words[0] != magic {
        return Outcome::BadMagic {
            expected: magic,
            found: words[0],
        };
    }
    let dims = words[1..].to_vec();
    if dims.contains(&0) {
        return Outcome::ZeroDimension(dims);
    }
    // u128 cannot overflow for three u32 factors times 4.
    let n: u128 = dims.iter().map(|&d| u128::from(d)).product();
    if n * 4 > isize::MAX as u128 {
        return Outcome::TooLarge(dims);
    }
    let body = &plain[needed..];
    let expected = n as u64;
    let found = body.len() as u64;
    if found < expected {
        return Outcome::TruncatedBody { expected, found };
    }
    if found > expected {
        return Outcome::TrailingData { expected };
    }
    if magic == LABEL_MAGIC {
        Outcome::Labels(body.to_vec())
    } else {
        Outcome::Images {
            count: dims[0] as usize,
            rows: dims[1] as usize,
            cols: dims[2] as usize,
            // Correctly rounded byte/255 via f64: double rounding is exact
            // here (53 >= 2·24 + 2), so this equals the f32 division.
            pixels: body
                .iter()
                .map(|&b| (f64::from(b) / 255.0) as f32)
                .collect(),
        }
    }
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Full decompression of every gzip member, or None when the stream is corrupt.
fn gunzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    MultiGzDecoder::new(bytes).read_to_end(&mut out).ok()?;
    Some(out)
}

/// Checks a decode of arbitrary bytes against the reference: plain input must
/// give exactly the reference's outcome; gzip input must give it whenever
/// the stream decompresses, and an error (never a value) when it does not.
fn check_against_reference(bytes: &[u8], magic: u32, actual: &Outcome) {
    if !is_gzip(bytes) {
        assert_eq!(*actual, reference(bytes, magic));
        return;
    }
    match gunzip(bytes) {
        Some(plain) => assert_eq!(*actual, reference(&plain, magic)),
        None => assert!(
            actual.is_content_error(),
            "a corrupt gzip stream gave {actual:?}"
        ),
    }
}

fn pixels_of(file: &[u8]) -> Vec<f32> {
    file[16..].iter().map(|&b| f32::from(b) / 255.0).collect()
}

// ---------------------------------------------------------------------------
// Valid files round-trip

#[test]
fn every_byte_value_becomes_byte_over_255_exactly() {
    let body: Vec<u8> = (0..=255).collect();
    let file = idx(IMAGE_MAGIC, &[1, 16, 16], &body);
    let Outcome::Images { pixels, .. } = decoded_images(&file) else {
        panic!("valid file refused");
    };
    for (b, p) in body.iter().zip(&pixels) {
        assert_eq!(*p, f32::from(*b) / 255.0);
        assert_eq!(*p, (f64::from(*b) / 255.0) as f32);
    }
    assert_eq!(pixels[0], 0.0);
    assert_eq!(pixels[255], 1.0);
}

proptest! {
    #[test]
    fn valid_files_round_trip(
        count in 1u32..6,
        rows in 1u32..7,
        cols in 1u32..7,
        seed in any::<u8>(),
        level in 0u32..10,
        labels in prop::collection::vec(any::<u8>(), 1..40),
    ) {
        let images = image_file(count, rows, cols, seed);
        let want = Outcome::Images {
            count: count as usize,
            rows: rows as usize,
            cols: cols as usize,
            pixels: images[16..].iter().map(|&b| (f64::from(b) / 255.0) as f32).collect(),
        };
        prop_assert_eq!(decoded_images(&images), want.clone());
        prop_assert_eq!(decoded_images(&gzip_level(&images, level)), want.clone());

        let label_bytes = label_file(&labels);
        prop_assert_eq!(decoded_labels(&label_bytes), Outcome::Labels(labels.clone()));
        prop_assert_eq!(
            decoded_labels(&gzip_level(&label_bytes, level)),
            Outcome::Labels(labels.clone())
        );

        // The same through files and parse_mnist, with matching counts.
        let dir = scratch("valid_files_round_trip");
        let img = write(&dir, "images.gz", &gzip_level(&images, level));
        let lbl = write(&dir, "labels", &label_file(&labels[..1].repeat(count as usize)));
        prop_assert_eq!(read_images_outcome(&img), want);
        let (x, y) = parse_mnist(&img, &lbl).unwrap();
        prop_assert_eq!(x.dim(), (count as usize, (rows * cols) as usize));
        prop_assert_eq!(x.as_ptr() as usize % 64, 0);
        prop_assert_eq!(x.iter().copied().collect::<Vec<_>>(), pixels_of(&images));
        prop_assert_eq!(y.to_vec(), vec![labels[0]; count as usize]);
    }
}

// ---------------------------------------------------------------------------
// Truncation at every cut point

#[test]
fn plain_files_cut_at_every_point() {
    let dir = scratch("plain_files_cut_at_every_point");
    let images = image_file(2, 3, 4, 7);
    let labels = label_file(&[3, 1, 4, 1, 5]);
    for cut in 0..=images.len() {
        let path = write(&dir, "images", &images[..cut]);
        let want = if cut < 16 {
            Outcome::TruncatedHeader {
                needed: 16,
                found: cut,
            }
        } else if cut < images.len() {
            Outcome::TruncatedBody {
                expected: 24,
                found: cut as u64 - 16,
            }
        } else {
            reference(&images, IMAGE_MAGIC)
        };
        assert!(cut < images.len() || want.is_ok());
        assert_eq!(read_images_outcome(&path), want, "cut at {cut}");
    }
    for cut in 0..=labels.len() {
        let path = write(&dir, "labels", &labels[..cut]);
        let want = if cut < 8 {
            Outcome::TruncatedHeader {
                needed: 8,
                found: cut,
            }
        } else if cut < labels.len() {
            Outcome::TruncatedBody {
                expected: 5,
                found: cut as u64 - 8,
            }
        } else {
            Outcome::Labels(vec![3, 1, 4, 1, 5])
        };
        assert_eq!(read_labels_outcome(&path), want, "cut at {cut}");
    }
}

#[test]
fn gzip_files_cut_at_every_point() {
    let dir = scratch("gzip_files_cut_at_every_point");
    for (plain, magic) in [
        (image_file(2, 3, 4, 7), IMAGE_MAGIC),
        (label_file(&[3, 1, 4, 1, 5]), LABEL_MAGIC),
    ] {
        let needed = plain.len().min(if magic == IMAGE_MAGIC { 16 } else { 8 });
        let gz = gzip(&plain);
        for cut in 0..=gz.len() {
            let path = write(&dir, "file.gz", &gz[..cut]);
            let want = match cut {
                // Empty, or a lone 0x1f read as an uncompressed header.
                0 | 1 => Outcome::TruncatedHeader { needed, found: cut },
                // Anything shorter than the whole member is corrupt gzip:
                // the deflate stream or its CRC/length trailer is cut.
                c if c < gz.len() => Outcome::Gzip,
                _ => reference(&plain, magic),
            };
            let got = if magic == IMAGE_MAGIC {
                read_images_outcome(&path)
            } else {
                read_labels_outcome(&path)
            };
            assert_eq!(got, want, "gzip cut at {cut} of {}", gz.len());
        }
    }
}

/// Cuts that leave a complete gzip stream of a truncated file give the same
/// truncation errors as the uncompressed file.
#[test]
fn gzip_of_truncated_files() {
    let images = image_file(2, 3, 4, 7);
    for cut in 0..images.len() {
        let gz = gzip(&images[..cut]);
        assert_eq!(
            decoded_images(&gz),
            reference(&images[..cut], IMAGE_MAGIC),
            "cut at {cut}"
        );
        assert!(!decoded_images(&gz).is_ok());
    }
}

// ---------------------------------------------------------------------------
// Headers that lie

#[test]
fn wrong_magic() {
    let images = image_file(1, 2, 2, 0);
    // Long enough to hold an image header, so that the magic is what is wrong.
    let labels = label_file(&[1, 2, 3, 4, 5, 6, 7, 8]);
    let dir = scratch("wrong_magic");
    // A label file read as images and the other way round.
    for (file, want, read) in [
        (
            &labels,
            Outcome::BadMagic {
                expected: IMAGE_MAGIC,
                found: LABEL_MAGIC,
            },
            read_images_outcome as fn(&Path) -> Outcome,
        ),
        (
            &images,
            Outcome::BadMagic {
                expected: LABEL_MAGIC,
                found: IMAGE_MAGIC,
            },
            read_labels_outcome,
        ),
    ] {
        assert_eq!(read(&write(&dir, "plain", file)), want);
        assert_eq!(read(&write(&dir, "file.gz", &gzip(file)),), want);
    }
    // Other element types of IDX (0x08 unsigned byte is the only one read).
    for magic in [
        0x0000_0903u32,
        0x0000_0d03,
        0x0803_0000,
        0x0000_0804,
        0x1f8a_0803,
    ] {
        let mut file = images.clone();
        file[..4].copy_from_slice(&magic.to_be_bytes());
        let want = Outcome::BadMagic {
            expected: IMAGE_MAGIC,
            found: magic,
        };
        assert_eq!(decoded_images(&file), want);
        assert_eq!(decoded_images(&gzip(&file)), want);
    }
}

proptest! {
    #[test]
    fn any_other_magic_is_refused(magic in any::<u32>(), gz in any::<bool>()) {
        prop_assume!(magic != IMAGE_MAGIC && magic != LABEL_MAGIC);
        for (base, expected) in [(image_file(1, 2, 2, 0), IMAGE_MAGIC), (label_file(&[9]), LABEL_MAGIC)] {
            let mut file = base;
            file[..4].copy_from_slice(&magic.to_be_bytes());
            let bytes = if gz { gzip(&file) } else { file.clone() };
            let got = if expected == IMAGE_MAGIC { decoded_images(&bytes) } else { decoded_labels(&bytes) };
            if !gz && is_gzip(&file) {
                // The magic itself looks like gzip: read as a corrupt stream.
                prop_assert!(got.is_content_error());
            } else {
                prop_assert_eq!(got, Outcome::BadMagic { expected, found: magic });
            }
        }
    }
}

const G30: u32 = 1 << 30;
const M20: u32 = 1 << 20;

#[test]
fn huge_claims_over_a_tiny_body() {
    let tiny = [7u8; 10];
    let cases: Vec<(Vec<u32>, Outcome)> = vec![
        (
            vec![G30, 28, 28],
            Outcome::TruncatedBody {
                expected: u64::from(G30) * 784,
                found: 10,
            },
        ),
        (
            vec![G30, 1, 1],
            Outcome::TruncatedBody {
                expected: 1 << 30,
                found: 10,
            },
        ),
        (
            vec![1, M20, M20],
            Outcome::TruncatedBody {
                expected: 1 << 40,
                found: 10,
            },
        ),
        // 2^60 bytes decode to 2^62 bytes of f32: still addressable.
        (
            vec![G30, G30, 1],
            Outcome::TruncatedBody {
                expected: 1 << 60,
                found: 10,
            },
        ),
        // 2^61 bytes would be 2^63 bytes of f32: more than isize::MAX.
        (
            vec![1 << 31, G30, 1],
            Outcome::TooLarge(vec![1 << 31, G30, 1]),
        ),
        // 2^70: overflows u64.
        (vec![G30, M20, M20], Outcome::TooLarge(vec![G30, M20, M20])),
        (vec![u32::MAX; 3], Outcome::TooLarge(vec![u32::MAX; 3])),
    ];
    let dir = scratch("huge_claims_over_a_tiny_body");
    for (dims, want) in cases {
        let file = idx(IMAGE_MAGIC, &dims, &tiny);
        assert_eq!(reference(&file, IMAGE_MAGIC), want, "{dims:?}");
        assert_eq!(
            read_images_outcome(&write(&dir, "plain", &file)),
            want,
            "{dims:?}"
        );
        assert_eq!(
            read_images_outcome(&write(&dir, "file.gz", &gzip(&file))),
            want,
            "gzip {dims:?}"
        );
    }
    for n in [G30, u32::MAX] {
        let file = idx(LABEL_MAGIC, &[n], &tiny);
        let want = Outcome::TruncatedBody {
            expected: u64::from(n),
            found: 10,
        };
        assert_eq!(decoded_labels(&file), want);
        assert_eq!(decoded_labels(&gzip(&file)), want);
    }
}

#[test]
fn zero_dimensions() {
    for dims in [[0, 28, 28], [5, 0, 28], [5, 28, 0], [0, 0, 0]] {
        let file = idx(IMAGE_MAGIC, &dims, &[1, 2, 3]);
        let want = Outcome::ZeroDimension(dims.to_vec());
        assert_eq!(decoded_images(&file), want);
        assert_eq!(decoded_images(&gzip(&file)), want);
    }
    // Zero items with no body at all: refused too, not an empty array.
    assert_eq!(
        decoded_images(&idx(IMAGE_MAGIC, &[0, 28, 28], &[])),
        Outcome::ZeroDimension(vec![0, 28, 28])
    );
    assert_eq!(
        decoded_labels(&idx(LABEL_MAGIC, &[0], &[])),
        Outcome::ZeroDimension(vec![0])
    );
}

#[test]
fn trailing_bytes() {
    let dir = scratch("trailing_bytes");
    let images = image_file(2, 3, 4, 1);
    let labels = label_file(&[1, 2, 3]);
    for extra in [&[0u8][..], &[0xff], &[1, 2, 3, 4, 5, 6, 7, 8, 9]] {
        let file = [&images[..], extra].concat();
        let want = Outcome::TrailingData { expected: 24 };
        assert_eq!(read_images_outcome(&write(&dir, "plain", &file)), want);
        // Extra bytes inside the compressed data.
        assert_eq!(
            read_images_outcome(&write(&dir, "file.gz", &gzip(&file))),
            want
        );
        // Extra data in a second, valid member.
        let two = [gzip(&images), gzip(extra)].concat();
        assert_eq!(read_images_outcome(&write(&dir, "two.gz", &two)), want);

        let file = [&labels[..], extra].concat();
        let want = Outcome::TrailingData { expected: 3 };
        assert_eq!(decoded_labels(&file), want);
        assert_eq!(decoded_labels(&gzip(&file)), want);
    }
}

// ---------------------------------------------------------------------------
// Broken gzip

/// Flipping bits of a valid gzip file: the trailer's CRC-32 and length catch
/// every change to the data, so nothing but the header's unchecked fields
/// (MTIME, XFL, OS) and deflate's ignored padding bits can change without an
/// error — and such changes decode to the original.
#[test]
fn corrupt_deflate_streams() {
    let plain = image_file(3, 5, 5, 11);
    let gz = gzip(&plain);
    let original = decoded_images(&gz);
    assert!(original.is_ok());
    let trailer = gz.len() - 8;
    let mut errors_in_stream = 0;
    let mut stream_flips = 0;
    for pos in 0..gz.len() {
        for mask in [0x01u8, 0x02, 0x10, 0x80, 0xff] {
            let mut bad = gz.clone();
            bad[pos] ^= mask;
            let got = decoded_images(&bad);
            assert!(
                got == original || got.is_content_error(),
                "flip {mask:#x} at {pos}: {got:?}"
            );
            match pos {
                // ID1, ID2: no longer gzip, so the bytes are read as an IDX header.
                0 | 1 => assert!(matches!(got, Outcome::BadMagic { .. }), "{got:?}"),
                // CM (8 = deflate): refused as gzip.
                2 => assert_eq!(got, Outcome::Gzip, "flip {mask:#x} at {pos}"),
                // MTIME, XFL, OS are not checked by gzip.
                4..=9 => assert_eq!(got, original, "flip {mask:#x} at {pos}"),
                p if p >= trailer => assert_eq!(got, Outcome::Gzip, "flip {mask:#x} at {p}"),
                p if p >= 10 => {
                    stream_flips += 1;
                    if got != original {
                        errors_in_stream += 1;
                    }
                }
                _ => {}
            }
        }
    }
    // Only the last byte's padding bits may be flipped unnoticed.
    assert!(
        stream_flips - errors_in_stream <= 5,
        "{} of {stream_flips} flips inside the deflate stream went unnoticed",
        stream_flips - errors_in_stream
    );
}

proptest! {
    #[test]
    fn random_corruption_of_gzip_never_yields_wrong_data(
        flips in prop::collection::vec((any::<Index>(), 1u8..=255), 1..6),
        labels in any::<bool>(),
    ) {
        let plain = if labels { label_file(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]) } else { image_file(2, 4, 4, 3) };
        let mut gz = gzip(&plain);
        // Corrupt only the deflate data and trailer, past the 10-byte header.
        for (i, mask) in &flips {
            let pos = 10 + i.index(gz.len() - 10);
            gz[pos] ^= mask;
        }
        let got = if labels { decoded_labels(&gz) } else { decoded_images(&gz) };
        let magic = if labels { LABEL_MAGIC } else { IMAGE_MAGIC };
        check_against_reference(&gz, magic, &got);
        // A value can come back only if it is the original one.
        if got.is_ok() {
            prop_assert_eq!(got, reference(&plain, magic));
        }
    }
}

#[test]
fn multi_member_gzip_decodes_like_one_member() {
    let images = image_file(2, 3, 4, 9);
    let labels = label_file(&[9, 8, 7, 6]);
    for (plain, magic) in [(&images, IMAGE_MAGIC), (&labels, LABEL_MAGIC)] {
        let decode = |b: &[u8]| {
            if magic == IMAGE_MAGIC {
                decoded_images(b)
            } else {
                decoded_labels(b)
            }
        };
        let single = decode(&gzip(plain));
        assert!(single.is_ok());
        for cut in 0..=plain.len() {
            // Split at every point, header included, even into an empty member.
            let two = [gzip(&plain[..cut]), gzip(&plain[cut..])].concat();
            assert_eq!(decode(&two), single, "members split at {cut}");
            let three = [gzip(&plain[..cut]), gzip(&[]), gzip(&plain[cut..])].concat();
            assert_eq!(decode(&three), single, "three members split at {cut}");
        }
    }
    // The same through a file.
    let dir = scratch("multi_member_gzip_decodes_like_one_member");
    let path = write(
        &dir,
        "two.gz",
        &[gzip(&images[..20]), gzip(&images[20..])].concat(),
    );
    assert_eq!(read_images_outcome(&path), decoded_images(&images));
}

#[test]
fn garbage_after_the_gzip_member() {
    let dir = scratch("garbage_after_the_gzip_member");
    let images = image_file(2, 3, 4, 9);
    let gz = gzip(&images);
    // A stray byte, zero padding, text, a lone gzip magic, a member header
    // without a body, and an uncompressed copy of the file.
    let garbage: [&[u8]; 6] = [
        &[0],
        &[0; 512],
        b"garbage",
        &[0x1f, 0x8b],
        &gz[..10],
        &images,
    ];
    for g in garbage {
        let path = write(&dir, "file.gz", &[&gz[..], g].concat());
        assert_eq!(read_images_outcome(&path), Outcome::Gzip, "garbage {g:?}");
    }
    // A second member cut short decodes into data beyond the declared body
    // before its corruption is reached: trailing data, still an error.
    let path = write(&dir, "file.gz", &[&gz[..], &gz[..gz.len() - 1]].concat());
    assert_eq!(
        read_images_outcome(&path),
        Outcome::TrailingData { expected: 24 }
    );
}

proptest! {
    #[test]
    fn random_garbage_after_the_gzip_member(garbage in prop::collection::vec(any::<u8>(), 1..64)) {
        let gz = gzip(&label_file(&[1, 2, 3]));
        let bytes = [&gz[..], &garbage].concat();
        let got = decoded_labels(&bytes);
        check_against_reference(&bytes, LABEL_MAGIC, &got);
        if gunzip(&bytes).is_none() {
            prop_assert_eq!(got, Outcome::Gzip);
        }
    }
}

// ---------------------------------------------------------------------------
// The file system

#[test]
fn empty_files() {
    let dir = scratch("empty_files");
    let path = write(&dir, "empty", &[]);
    assert_eq!(
        read_images_outcome(&path),
        Outcome::TruncatedHeader {
            needed: 16,
            found: 0
        }
    );
    assert_eq!(
        read_labels_outcome(&path),
        Outcome::TruncatedHeader {
            needed: 8,
            found: 0
        }
    );
    // A valid gzip stream of nothing.
    let path = write(&dir, "empty.gz", &gzip(&[]));
    assert_eq!(
        read_images_outcome(&path),
        Outcome::TruncatedHeader {
            needed: 16,
            found: 0
        }
    );
}

#[test]
fn a_directory_is_an_io_error() {
    let dir = scratch("a_directory_is_an_io_error");
    let got = read_images_outcome(&dir);
    assert_eq!(got, Outcome::Io(std::io::ErrorKind::IsADirectory));
    assert_eq!(
        read_labels_outcome(&dir),
        Outcome::Io(std::io::ErrorKind::IsADirectory)
    );
}

#[test]
fn a_missing_path_is_an_io_error() {
    let dir = scratch("a_missing_path_is_an_io_error");
    let missing = dir.join("no-such-file.gz");
    assert_eq!(
        read_images_outcome(&missing),
        Outcome::Io(std::io::ErrorKind::NotFound)
    );
    assert_eq!(
        read_labels_outcome(&missing),
        Outcome::Io(std::io::ErrorKind::NotFound)
    );
    // A path through a regular file.
    let file = write(&dir, "file", &label_file(&[1]));
    assert_eq!(
        read_labels_outcome(&file.join("below")),
        Outcome::Io(std::io::ErrorKind::NotADirectory)
    );
}

#[test]
fn non_utf8_paths() {
    let dir = scratch("non_utf8_paths");
    let name = OsStr::from_bytes(b"labels-\xff\xfe.gz");
    assert!(name.to_str().is_none());
    let path = write(&dir, name, &gzip(&label_file(&[4, 2])));
    assert_eq!(read_labels_outcome(&path), Outcome::Labels(vec![4, 2]));

    // Errors still name the file, lossily: the invalid bytes become U+FFFD.
    let message = read_images(&path).unwrap_err().to_string();
    assert!(message.contains("labels-\u{fffd}\u{fffd}.gz"), "{message}");
    let missing = dir.join(OsStr::from_bytes(b"images-\x80"));
    assert_eq!(
        read_images_outcome(&missing),
        Outcome::Io(std::io::ErrorKind::NotFound)
    );
}

#[test]
fn count_mismatch_through_parse_mnist() {
    let dir = scratch("count_mismatch_through_parse_mnist");
    let images = write(&dir, "images.gz", &gzip(&image_file(3, 2, 2, 0)));
    let labels = write(&dir, "labels", &label_file(&[1, 2, 3, 4]));
    let got = file_outcome(parse_mnist(&images, &labels), &labels, |_| {
        panic!("3 images and 4 labels accepted")
    });
    assert_eq!(
        got,
        Outcome::CountMismatch {
            images: 3,
            labels: 4
        }
    );

    // Each file's own error names that file.
    let broken = write(&dir, "broken", &[0x00, 0x00, 0x08]);
    let got = file_outcome(parse_mnist(&broken, &labels), &broken, |_| unreachable!());
    assert_eq!(
        got,
        Outcome::TruncatedHeader {
            needed: 16,
            found: 3
        }
    );
    let got = file_outcome(parse_mnist(&images, &broken), &broken, |_| unreachable!());
    assert_eq!(
        got,
        Outcome::TruncatedHeader {
            needed: 8,
            found: 3
        }
    );

    // Matching counts pass.
    let three = write(&dir, "three", &label_file(&[1, 2, 3]));
    let (x, y) = parse_mnist(&images, &three).unwrap();
    assert_eq!((x.nrows(), y.len()), (3, 3));
}

// ---------------------------------------------------------------------------
// Random mutation: never a panic, always the reference's answer

#[derive(Debug, Clone)]
struct Mutation {
    /// Overwrite one big-endian header word of the uncompressed file.
    header_word: Option<(Index, u32)>,
    /// Overwrite bytes (of the compressed file when compressed).
    writes: Vec<(Index, u8)>,
    /// Cut the file here.
    truncate: Option<Index>,
    /// Then append these bytes.
    append: Vec<u8>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        prop::option::of((any::<Index>(), any::<u32>())),
        prop::collection::vec((any::<Index>(), any::<u8>()), 0..6),
        prop::option::weighted(0.3, any::<Index>()),
        prop::collection::vec(any::<u8>(), 0..6),
    )
        .prop_map(|(header_word, writes, truncate, append)| Mutation {
            header_word,
            writes,
            truncate,
            append,
        })
}

fn mutate(plain: &[u8], gz: bool, level: u32, m: &Mutation) -> Vec<u8> {
    let mut plain = plain.to_vec();
    if let Some((i, word)) = &m.header_word {
        let header_words = if plain[3] == 3 { 4 } else { 2 };
        let at = 4 * i.index(header_words);
        plain[at..at + 4].copy_from_slice(&word.to_be_bytes());
    }
    let mut bytes = if gz { gzip_level(&plain, level) } else { plain };
    for (i, b) in &m.writes {
        let at = i.index(bytes.len());
        bytes[at] = *b;
    }
    if let Some(i) = &m.truncate {
        bytes.truncate(i.index(bytes.len() + 1));
    }
    bytes.extend_from_slice(&m.append);
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]
    #[test]
    fn mutated_files_decode_consistently_or_fail(
        count in 1u32..4,
        rows in 1u32..5,
        cols in 1u32..5,
        gz in any::<bool>(),
        level in 0u32..10,
        m in mutation(),
    ) {
        let images = mutate(&image_file(count, rows, cols, 5), gz, level, &m);
        let got = decoded_images(&images);
        check_against_reference(&images, IMAGE_MAGIC, &got);
        if let Outcome::Images { count, rows, cols, pixels } = &got {
            prop_assert_eq!(pixels.len(), count * rows * cols);
            prop_assert!(pixels.iter().all(|p| (0.0..=1.0).contains(p)));
        }

        let labels = mutate(&label_file(&[1, 2, 3, 4, 5, 6][..count as usize]), gz, level, &m);
        let got = decoded_labels(&labels);
        check_against_reference(&labels, LABEL_MAGIC, &got);
    }

    /// Arbitrary bytes, and arbitrary bytes behind a gzip magic.
    #[test]
    fn arbitrary_bytes_never_panic(
        mut bytes in prop::collection::vec(any::<u8>(), 0..64),
        gz_magic in any::<bool>(),
    ) {
        if gz_magic && bytes.len() >= 2 {
            bytes[..2].copy_from_slice(&[0x1f, 0x8b]);
        }
        check_against_reference(&bytes, IMAGE_MAGIC, &decoded_images(&bytes));
        check_against_reference(&bytes, LABEL_MAGIC, &decoded_labels(&bytes));
    }
}

// ---------------------------------------------------------------------------
// Memory bounded by the data present

const CHILD_ENV: &str = "SIMPLE_ML_IDX_MEMORY_CHILD";
/// Address space the child may use beyond what it has mapped when it starts
/// the reads: room for decoding tiny files, far below a header-sized (≥ 1 GiB)
/// allocation.
const HEADROOM: u64 = 128 << 20;

#[test]
fn memory_is_bounded_by_the_data_present() {
    if std::env::var_os(CHILD_ENV).is_some() {
        memory_child();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "memory_is_bounded_by_the_data_present",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child under an address-space limit failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for line in [
        "memory child: limit works, 7 reads refused with TruncatedBody",
        "memory child: endless sources refused",
    ] {
        assert!(
            stdout.contains(line),
            "the child did not print {line:?}:\n{stdout}\n{stderr}"
        );
    }
}

/// Address space mapped by this process now, from /proc/self/statm.
fn mapped_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page
}

fn memory_child() {
    let dir = scratch("memory_is_bounded_by_the_data_present");
    let body = [42u8; 100];
    let huge_images = idx(IMAGE_MAGIC, &[G30, 28, 28], &body);
    let one_gib_images = idx(IMAGE_MAGIC, &[G30, 1, 1], &body);
    let huge_labels = idx(LABEL_MAGIC, &[G30], &body);
    // A gzip bomb: 8 MiB of zeros in about 8 KiB, under a 1 GiB claim.
    let bomb = gzip(&idx(LABEL_MAGIC, &[G30], &vec![0; 8 << 20]));
    assert!(bomb.len() < 16 << 10);
    let images_784 = u64::from(G30) * 784;
    let cases = [
        (write(&dir, "images", &huge_images), images_784, 100),
        (write(&dir, "images-1g", &one_gib_images), 1 << 30, 100),
        (
            write(&dir, "images.gz", &gzip(&huge_images)),
            images_784,
            100,
        ),
        (
            write(&dir, "images-1g.gz", &gzip(&one_gib_images)),
            1 << 30,
            100,
        ),
        (write(&dir, "labels", &huge_labels), 1 << 30, 100),
        (write(&dir, "labels.gz", &gzip(&huge_labels)), 1 << 30, 100),
        (write(&dir, "labels-bomb.gz", &bomb), 1 << 30, 8 << 20),
    ];

    let mut rlimit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rlimit` is a valid struct for getrlimit to fill in.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut rlimit) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    // Lower the soft limit only; the hard limit stays as it was.
    rlimit.rlim_cur = (mapped_bytes() + HEADROOM).min(rlimit.rlim_max);
    // SAFETY: `rlimit` is a valid, initialised struct that outlives the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlimit) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());

    // The limit must be tight enough to refuse what the headers claim, and
    // loose enough to leave room for real work.
    assert!(
        Vec::<u8>::new().try_reserve_exact(1 << 30).is_err(),
        "1 GiB could still be reserved under the limit"
    );
    let mut room = Vec::<u8>::new();
    room.try_reserve_exact(32 << 20)
        .expect("32 MiB must fit under the limit");
    drop(room);

    let mut refused = 0;
    for (path, expected, found) in &cases {
        let name = path.file_name().unwrap().to_str().unwrap();
        let got = if name.starts_with("labels") {
            read_labels_outcome(path)
        } else {
            read_images_outcome(path)
        };
        let want = Outcome::TruncatedBody {
            expected: *expected,
            found: *found,
        };
        assert_eq!(got, want, "{name}");
        refused += 1;
    }
    println!("memory child: limit works, {refused} reads refused with TruncatedBody");

    endless_sources(&dir);
    println!("memory child: endless sources refused");
}

/// Devices and FIFOs never end: the reader must stop once the header and the
/// declared body are read, not read everything the source produces.
fn endless_sources(dir: &Path) {
    let zero = Path::new("/dev/zero");
    let want = |expected| Outcome::BadMagic { expected, found: 0 };
    assert_eq!(read_images_outcome(zero), want(IMAGE_MAGIC));
    assert_eq!(read_labels_outcome(zero), want(LABEL_MAGIC));
    // Random bytes: refused (almost always for the magic; one time in 65536
    // they start like gzip and must be refused as corrupt gzip).
    for _ in 0..4 {
        let got = read_images_outcome(Path::new("/dev/urandom"));
        assert!(got.is_content_error(), "{got:?}");
    }

    // A header declaring 1000 labels, then bytes without end.
    let plain = idx(LABEL_MAGIC, &[1000], &[]);
    let got = read_from_fifo(dir, "labels.fifo", plain, vec![7; 64 << 10]);
    assert_eq!(got, Outcome::TrailingData { expected: 1000 });
    // The same compressed: one member with the header, then members of 64 KiB
    // of zeros without end.
    let head = gzip(&idx(LABEL_MAGIC, &[1000], &[]));
    let got = read_from_fifo(dir, "labels-gz.fifo", head, gzip(&vec![0; 64 << 10]));
    assert_eq!(got, Outcome::TrailingData { expected: 1000 });
}

/// Reads labels from a FIFO into which a thread writes `head`, then `chunk`
/// over and over until the reader closes its end.
fn read_from_fifo(dir: &Path, name: &str, head: Vec<u8>, chunk: Vec<u8>) -> Outcome {
    let fifo = dir.join(name);
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", fifo.display());
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        // Opening blocks until the reader opens the other end.
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .open(writer_path)
            .unwrap();
        let mut written = head.len() as u64;
        if out.write_all(&head).is_err() {
            return written;
        }
        // Ends with EPIPE once the reader has closed (Rust ignores SIGPIPE).
        while out.write_all(&chunk).is_ok() {
            written += chunk.len() as u64;
        }
        written
    });
    let got = read_labels_outcome(&fifo);
    let written = writer.join().unwrap();
    assert!(
        written < 64 << 20,
        "the reader took {written} bytes from an endless source"
    );
    got
}
