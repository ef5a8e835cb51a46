//! Arbitrary bytes through the IDX/gzip reader, as images and as labels.
//!
//! Crashes, panics, sanitizer reports, and single allocations over
//! libFuzzer's `-malloc_limit_mb` are findings. A successful decode must also
//! agree with the uncompressed bytes it came from: dimensions from the
//! header, exactly the declared number of values, each pixel `byte / 255`.

#![no_main]

use std::io::Read;

use flate2::read::MultiGzDecoder;
use libfuzzer_sys::fuzz_target;
use simple_ml::mnist::{decode_images, decode_labels, IMAGE_MAGIC, LABEL_MAGIC};

fuzz_target!(|data: &[u8]| {
    if let Ok(images) = decode_images(data) {
        let plain = uncompressed(data);
        let dims = header(&plain, IMAGE_MAGIC);
        let [count, rows, cols] = [dims[0], dims[1], dims[2]];
        let body = &plain[16..];
        assert_eq!(images.pixels.dim(), (count, rows * cols));
        assert_eq!((images.rows, images.cols), (rows, cols));
        assert_eq!(images.pixels.len(), count * rows * cols);
        assert_eq!(body.len(), images.pixels.len());
        for (&p, &b) in images.pixels.iter().zip(body) {
            assert!((0.0..=1.0).contains(&p), "pixel {p} outside [0, 1]");
            assert_eq!(p, f32::from(b) / 255.0);
        }
    }
    if let Ok(labels) = decode_labels(data) {
        let plain = uncompressed(data);
        let dims = header(&plain, LABEL_MAGIC);
        assert_eq!(labels.len(), dims[0]);
        assert_eq!(labels.as_slice().unwrap(), &plain[8..]);
    }
});

/// The IDX bytes behind input that decoded: the input itself, or every gzip
/// member inflated (bounded: a successful decode read the stream to its end).
fn uncompressed(data: &[u8]) -> Vec<u8> {
    if !data.starts_with(&[0x1f, 0x8b]) {
        return data.to_vec();
    }
    let mut plain = Vec::new();
    MultiGzDecoder::new(data)
        .read_to_end(&mut plain)
        .expect("a stream that decoded inflates again");
    plain
}

/// The dimensions in a header that must carry `magic`.
fn header(plain: &[u8], magic: u32) -> Vec<usize> {
    let word = |i: usize| u32::from_be_bytes(plain[4 * i..4 * i + 4].try_into().unwrap());
    assert_eq!(word(0), magic);
    (1..=(magic & 0xff) as usize)
        .map(|i| word(i) as usize)
        .collect()
}
