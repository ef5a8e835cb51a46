//! Buffers of f32 that start on a cache line.
//!
//! The kernels load and store 16 floats (64 bytes) at a time at multiples
//! of 16 floats from the start of their buffers. A buffer that starts on a
//! cache line keeps every such vector in one line; the allocator puts a
//! large vector 16 bytes past a line (glibc's `mmap`ed chunks), so that
//! every vector straddles two lines and every store writes both.
//!
//! Used for the images `parse_mnist` returns (rows of 784 floats are whole
//! lines, so every 16-pixel chunk lies in one line: softmax epochs on two
//! threads took 21.0 against 22.2–22.4 ms on X 16 bytes past a line,
//! medians of 16 interleaved runs; on one thread 32.5 against 34.8–35.3 ms)
//! and for the network's hidden layer, G1 and packed W1. [`LineLanes`]
//! holds the lane groups the kernels load whole (θ held transposed, W2,
//! partial logits and their gradients): there every group is one line.

use std::ops::{Deref, DerefMut};

use crate::simd::{Lanes, LANES};

/// Bytes the buffers are aligned to: a cache line.
pub(crate) const LINE: usize = 64;

const FLOAT: usize = std::mem::size_of::<f32>();

/// An empty vector with room for `len` floats after `pad` zeros, where
/// `pad` puts the next float on a [`LINE`] boundary. Returns the vector
/// (holding the `pad` zeros) and `pad`.
pub(crate) fn line_start(len: usize) -> (Vec<f32>, usize) {
    let mut v: Vec<f32> = Vec::with_capacity(len + LINE / FLOAT - 1);
    let pad = (v.as_ptr() as usize).wrapping_neg() % LINE / FLOAT;
    v.resize(pad, 0.0);
    (v, pad)
}

/// `len` floats, zero to begin with, starting on a [`LINE`] boundary.
/// Dereferences to the floats.
#[derive(Debug, Default)]
pub(crate) struct LineAligned {
    buf: Vec<f32>,
    pad: usize,
}

impl LineAligned {
    /// `len` zeros.
    pub fn zeros(len: usize) -> Self {
        let (mut buf, pad) = line_start(len);
        buf.resize(pad + len, 0.0);
        LineAligned { buf, pad }
    }

    /// Makes the length `len`: floats kept up to it, zeros after them.
    pub fn resize(&mut self, len: usize) {
        if self.pad + len <= self.buf.capacity() {
            self.buf.resize(self.pad + len, 0.0);
        } else {
            let mut grown = LineAligned::zeros(len);
            let keep = self.len().min(len);
            grown[..keep].copy_from_slice(&self[..keep]);
            *self = grown;
        }
    }
}

impl Deref for LineAligned {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.pad..]
    }
}

impl DerefMut for LineAligned {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.pad..]
    }
}

/// Lane groups of 16 floats, zero to begin with, the first on a [`LINE`]
/// boundary, so that each group fills one line. Dereferences to the groups.
///
/// Measured on AMD Zen 4 (softmax epoch, two threads): the part whose
/// transposed θ the allocator had put 32 bytes past a line took 6.3–6.6 ms
/// for its forward halves against 5.1–5.5 ms for the part whose θ started
/// on a line (with a block of 24 chunks against 25), and the other thread
/// waited for it 2.5 ms an epoch.
#[derive(Debug, Default)]
pub(crate) struct LineLanes(LineAligned);

impl LineLanes {
    /// `groups` groups of zeros.
    pub fn zeros(groups: usize) -> Self {
        LineLanes(LineAligned::zeros(groups * LANES))
    }

    /// Makes the length `groups`: groups kept up to it, zeros after them.
    pub fn resize(&mut self, groups: usize) {
        self.0.resize(groups * LANES);
    }
}

impl Deref for LineLanes {
    type Target = [Lanes];
    fn deref(&self) -> &[Lanes] {
        self.0.as_chunks().0
    }
}

impl DerefMut for LineLanes {
    fn deref_mut(&mut self) -> &mut [Lanes] {
        self.0.as_chunks_mut().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_a_line(v: &[f32]) -> bool {
        (v.as_ptr() as usize).is_multiple_of(LINE)
    }

    #[test]
    fn buffers_start_on_a_line_whatever_the_allocator_returns() {
        // Sizes below and above glibc's mmap threshold (128 KiB), and odd ones.
        for len in [0, 1, 15, 16, 100 * 400, 96 * 400, 784 * 208, 1 << 20] {
            let z = LineAligned::zeros(len);
            assert_eq!(z.len(), len);
            assert!(z.iter().all(|&v| v == 0.0));
            assert!(len == 0 || on_a_line(&z), "zeros({len})");
        }
    }

    #[test]
    fn resize_keeps_the_floats_and_the_alignment() {
        let mut z = LineAligned::zeros(3);
        z.copy_from_slice(&[1.0, 2.0, 3.0]);
        z.resize(2);
        assert_eq!(&z[..], &[1.0, 2.0]);
        z.resize(100_000);
        assert_eq!(z.len(), 100_000);
        assert_eq!(&z[..3], &[1.0, 2.0, 0.0]);
        assert!(z[2..].iter().all(|&v| v == 0.0));
        assert!(on_a_line(&z));
        let mut empty = LineAligned::default();
        assert!(empty.is_empty());
        empty.resize(40_000);
        assert!(on_a_line(&empty) && empty.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn lane_groups_start_on_a_line_and_fill_it() {
        for groups in [0, 1, 7, 250, 2048, 1 << 14] {
            let mut z = LineLanes::zeros(groups);
            assert_eq!(z.len(), groups);
            assert!(z.iter().flatten().all(|&v| v == 0.0));
            assert!(
                groups == 0 || on_a_line(z.as_flattened()),
                "zeros({groups})"
            );
            if let Some(last) = z.last_mut() {
                last[LANES - 1] = 1.0;
                assert_eq!(z.as_flattened()[groups * LANES - 1], 1.0);
            }
        }
    }
}
