//! Softmax regression: one linear layer `X θ` trained by minibatch SGD.
//!
//! The epoch kernel works on chunks of 16 pixels with θ held transposed
//! (see the crate's private `chunked` module) and splits each minibatch
//! between threads by fixed blocks of input pixels: each thread computes its
//! blocks' partial logits; the threads meet, once a minibatch; each sums the
//! partials in block order and takes the softmax of every row itself, 16 rows
//! at a time (cheaper than a second meeting to share the rows' gradients);
//! then each updates the rows of θ for its own pixels.

use std::ops::Range;
use std::sync::Mutex;

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};

use crate::aligned::LineLanes;
use crate::chunked::{
    chunk_gradient, chunks, class_groups, lane_sums, pack_transposed, rows_logits,
    unpack_transposed, with_class_group,
};
use crate::error::Result;
use crate::eval::{loss_err_of, predict_of, Logits};
use crate::loss::LossErr;
use crate::parallel::{run_team, split_blocks, team_or_alone, threads_for};
use crate::sgd::{check_labels, check_positive, check_rows, check_shape, Sgd};
use crate::simd::{axpy_n, multiversion, Isa, Lanes, LANES};
use crate::softmax_rows::{drive_epoch, lane_groups, EpochPart, EpochShared};

/// Input pixels are split into this many fixed blocks (fewer when n is
/// small), the unit of work of a thread and of the partial sums. Each block
/// costs one horizontal sum per row, so there are as few as the threads
/// worth using on an epoch this small, whose speed two cores' memory
/// bandwidth already bounds.
const PIXEL_BLOCKS: usize = 2;

/// One epoch of minibatch SGD on softmax regression, updating `theta` (n×k)
/// in place. For a batch of b rows:
/// `θ ← θ − lr/b · Xbᵀ (softmax(Xb θ) − onehot(yb))`.
///
/// Batches are taken in order without shuffling; a final partial batch is
/// used and divided by its own size. Every argument is checked before
/// `theta` is touched: on error it is unchanged. An empty `x` (m = 0) is a
/// no-op. The result is the same for any number of threads.
pub fn softmax_regression_epoch(
    x: ArrayView2<'_, f32>,
    y: ArrayView1<'_, u8>,
    mut theta: ArrayViewMut2<'_, f32>,
    sgd: Sgd,
) -> Result<()> {
    check_arguments(x, y, theta.view(), sgd)?;
    let (m, n) = x.dim();
    if m == 0 {
        return Ok(());
    }
    let k = theta.ncols();
    let x = x.as_standard_layout();
    let y = y.as_standard_layout();
    let blocks = pixel_blocks(n);
    let threads = threads_for(m * n * lane_groups(k), blocks.len());
    let parts = team_or_alone(threads, |threads| {
        let parts: Vec<Mutex<SoftmaxPart>> = split_blocks(blocks.len(), threads)
            .into_iter()
            .map(|owned| Mutex::new(SoftmaxPart::new(theta.view(), &blocks, owned)))
            .collect();
        let shared = EpochShared::new(
            x.as_slice().expect("standard layout"),
            y.as_slice().expect("standard layout"),
            n,
            k,
            sgd,
            blocks.len(),
            threads,
        );
        run_team(threads, |me| softmax_worker((&shared, &blocks, &parts, me))).map(|()| parts)
    });
    for part in parts {
        let part = part.into_inner().expect("the workers finished");
        unpack_transposed(&part.theta_t, part.kpad, theta.view_mut(), part.pixels);
    }
    Ok(())
}

fn check_arguments(
    x: ArrayView2<'_, f32>,
    y: ArrayView1<'_, u8>,
    theta: ArrayView2<'_, f32>,
    sgd: Sgd,
) -> Result<()> {
    let (m, n) = x.dim();
    sgd.check()?;
    check_positive("n (columns of X)", n)?;
    check_positive("k (columns of theta)", theta.ncols())?;
    check_rows("X", m, y.len())?;
    check_shape("theta", theta.dim(), n, theta.ncols())?;
    check_labels(y, theta.ncols())
}

/// Fixed blocks of pixel columns, each a multiple of 16 wide but the last.
fn pixel_blocks(n: usize) -> Vec<Range<usize>> {
    let groups = n.div_ceil(LANES);
    let blocks = PIXEL_BLOCKS.min(groups);
    (0..blocks)
        .map(|b| (groups * b / blocks * LANES).min(n)..(groups * (b + 1) / blocks * LANES).min(n))
        .collect()
}

/// One thread's share: the pixel blocks it owns and their rows of θ held
/// transposed by chunks of 16 pixels.
struct SoftmaxPart {
    blocks: Range<usize>,
    pixels: Range<usize>,
    /// First chunk of the row this part owns.
    first: usize,
    group: usize,
    kpad: usize,
    theta_t: LineLanes,
}

impl SoftmaxPart {
    fn new(theta: ArrayView2<'_, f32>, all: &[Range<usize>], owned: Range<usize>) -> Self {
        let (group, kpad) = class_groups(theta.ncols());
        let pixels = all[owned.start].start..all[owned.end - 1].end;
        SoftmaxPart {
            blocks: owned,
            first: pixels.start / LANES,
            theta_t: pack_transposed(theta, pixels.clone(), kpad),
            pixels,
            group,
            kpad,
        }
    }

    /// [`EpochPart::forward`] for class groups of `CG`.
    #[inline(always)]
    fn forward_group<I: Isa, const CG: usize>(
        &mut self,
        sh: &EpochShared<'_>,
        blocks: &[Range<usize>],
        rows: Range<usize>,
        parity: usize,
    ) {
        let (n, kg) = (sh.n, sh.kg);
        let mut partials: Vec<_> = self
            .blocks
            .clone()
            .map(|b| sh.partials[parity][b].write().expect("no thread panicked"))
            .collect();
        let (first, kpad) = (self.first, self.kpad);
        let row = |i: usize| {
            let r = rows.start + i;
            &sh.x[r * n..(r + 1) * n]
        };
        // Row i of the next minibatch, read while this one is worked on.
        let next = |i: usize| {
            let r = rows.start + i + sh.batch;
            sh.x.get(r * n..(r + 1) * n).unwrap_or(&[])
        };
        for (blk, partial) in blocks[self.blocks.clone()].iter().zip(partials.iter_mut()) {
            let span = blk.start / LANES..blk.end.div_ceil(LANES);
            // Into row i's lane of the tile of its 16 rows (see
            // tiled_gradients).
            let mut store = |i: usize, q: usize, acc: &[Lanes; CG]| {
                let at = i / LANES * kg * LANES + q * CG;
                for (v, s) in partial[at..at + CG].iter_mut().zip(lane_sums::<I, CG>(acc)) {
                    v[i % LANES] = s;
                }
            };
            // Rows two at a time (each chunk of θ loaded once for both),
            // then the odd one out.
            let pairs = rows.len() / 2 * 2;
            for i in (0..pairs).step_by(2) {
                for q in 0..kpad / CG {
                    let ahead = if q == 0 {
                        [next(i), next(i + 1)]
                    } else {
                        [&[][..]; 2]
                    };
                    let [a, b] = rows_logits::<I, 2, CG, false>(
                        [row(i), row(i + 1)],
                        span.clone(),
                        (&self.theta_t, first, kpad, q),
                        ahead,
                    );
                    store(i, q, &a);
                    store(i + 1, q, &b);
                }
            }
            for i in pairs..rows.len() {
                for q in 0..kpad / CG {
                    let ahead = if q == 0 { [next(i)] } else { [&[][..]] };
                    let [a] = rows_logits::<I, 1, CG, false>(
                        [row(i)],
                        span.clone(),
                        (&self.theta_t, first, kpad, q),
                        ahead,
                    );
                    store(i, q, &a);
                }
            }
        }
    }

    /// `θᵀ[chunk c][class group q] += step · acc`.
    #[inline(always)]
    fn apply<I: Isa, const CG: usize>(&mut self, c: usize, q: usize, step: f32, acc: &[Lanes; CG]) {
        let at = c * self.kpad + q * CG;
        for (t, a) in self.theta_t[at..at + CG].iter_mut().zip(acc) {
            axpy_n::<I, LANES>(t, step, a);
        }
    }

    /// [`EpochPart::backward`] for class groups of `CG`.
    #[inline(always)]
    fn backward_group<I: Isa, const CG: usize>(
        &mut self,
        sh: &EpochShared<'_>,
        rows: Range<usize>,
        g: &[Lanes],
    ) {
        let (n, kg, kpad) = (sh.n, sh.kg, self.kpad);
        let step = -(sh.lr / rows.len() as f32);
        let x = &sh.x[rows.start * n..rows.end * n];
        // The next minibatch's rows, whose lines the forward pass already
        // asked for: asked again here, chunk by chunk. Measured (rotated
        // runs, 2 threads): 18.6–21.3 → 16.5–17.1 ms an epoch, so some of
        // the first requests do not bring their line in time.
        let next = sh.x.get(rows.end * n..).unwrap_or(&[]);
        let next = &next[..next.len().min(rows.len() * n)];
        // Two chunks at a time where both lie whole in the rows, then one.
        let (own, first) = (chunks(self.pixels.len()), self.first);
        let mut c = 0;
        while c < own {
            let two = c + 1 < own && (first + c + 2) * LANES <= n;
            for q in 0..kpad / CG {
                let ahead = if q == 0 { next } else { &[] };
                if two {
                    let accs =
                        chunk_gradient::<I, 2, CG, true>((x, n), first + c, (g, kg), q, ahead);
                    for (j, acc) in accs.iter().enumerate() {
                        self.apply::<I, CG>(c + j, q, step, acc);
                    }
                } else {
                    let [acc] =
                        chunk_gradient::<I, 1, CG, true>((x, n), first + c, (g, kg), q, ahead);
                    self.apply::<I, CG>(c, q, step, &acc);
                }
            }
            c += if two { 2 } else { 1 };
        }
    }
}

/// A worker's arguments: the shared state, the fixed pixel blocks, every
/// part, and which thread this is.
type WorkerArgs<'s, 'a> = (
    &'s EpochShared<'a>,
    &'s [Range<usize>],
    &'s [Mutex<SoftmaxPart>],
    usize,
);

multiversion! {
    fn softmax_worker(args: WorkerArgs<'_, '_>) -> () => softmax_worker_generic
}

#[inline(always)]
fn softmax_worker_generic<I: Isa>((sh, blocks, parts, me): WorkerArgs<'_, '_>) {
    drive_epoch::<I, SoftmaxPart>(sh, blocks, parts, me);
}

impl EpochPart for SoftmaxPart {
    /// The fixed blocks of pixel columns.
    type Extra = [Range<usize>];
    const TILED: bool = true;

    /// Publishes the partial logits of this part's pixel blocks, in tiles.
    #[inline(always)]
    fn forward<I: Isa>(
        &mut self,
        sh: &EpochShared<'_>,
        blocks: &[Range<usize>],
        rows: Range<usize>,
        parity: usize,
    ) {
        with_class_group!(self.group, CG => self.forward_group::<I, CG>(sh, blocks, rows, parity))
    }

    /// θ ← θ − lr/b · Xbᵀ G for this part's pixels, the gradient summed
    /// first as numpy does.
    #[inline(always)]
    fn backward<I: Isa>(
        &mut self,
        sh: &EpochShared<'_>,
        _: &[Range<usize>],
        rows: Range<usize>,
        _: usize,
        g: &[Lanes],
    ) {
        with_class_group!(self.group, CG => self.backward_group::<I, CG>(sh, rows, g))
    }
}

/// Logits `X θ` of softmax regression, for evaluation.
pub(crate) struct LinearLogits {
    k: usize,
    n: usize,
    group: usize,
    kpad: usize,
    theta_t: LineLanes,
    /// Whether every weight is finite, so that zero chunks of X can be
    /// skipped (where θ is not, a zero pixel times it is NaN, as in numpy).
    finite: bool,
}

impl LinearLogits {
    pub fn new(theta: ArrayView2<'_, f32>) -> Self {
        let (group, kpad) = class_groups(theta.ncols());
        LinearLogits {
            k: theta.ncols(),
            n: theta.nrows(),
            group,
            kpad,
            theta_t: pack_transposed(theta, 0..theta.nrows(), kpad),
            finite: theta.iter().all(|v| v.is_finite()),
        }
    }
}

multiversion! {
    fn linear_logits(args: (&LinearLogits, &[f32], &mut [Lanes])) -> () => linear_logits_generic
}

#[inline(always)]
fn linear_logits_generic<I: Isa>((model, x, out): (&LinearLogits, &[f32], &mut [Lanes])) {
    with_class_group!(model.group, CG => if model.finite {
        linear_logits_group::<I, CG, true>(model, x, out)
    } else {
        linear_logits_group::<I, CG, false>(model, x, out)
    })
}

#[inline(always)]
fn linear_logits_group<I: Isa, const CG: usize, const SKIP: bool>(
    model: &LinearLogits,
    x: &[f32],
    out: &mut [Lanes],
) {
    let (n, kpad) = (model.n, model.kpad);
    let kg = lane_groups(model.k);
    let theta = (&model.theta_t[..], 0, kpad);
    /// Rows ahead of those being multiplied that are prefetched.
    const AHEAD: usize = 4;
    let ahead = |i: usize| x.get((i + AHEAD) * n..(i + AHEAD + 1) * n).unwrap_or(&[]);
    let rows = x.len() / n;
    let mut store = |i: usize, q: usize, acc: &[Lanes; CG]| {
        let o = out[i * kg..(i + 1) * kg].as_flattened_mut();
        o[q * CG..(q + 1) * CG].copy_from_slice(&lane_sums::<I, CG>(acc));
    };
    // Rows two at a time, then the odd one out, as in the epoch.
    let pairs = rows / 2 * 2;
    for i in (0..pairs).step_by(2) {
        let both = [&x[i * n..(i + 1) * n], &x[(i + 1) * n..(i + 2) * n]];
        for q in 0..kpad / CG {
            let pf = if q == 0 {
                [ahead(i), ahead(i + 1)]
            } else {
                [&[][..]; 2]
            };
            let [a, b] =
                rows_logits::<I, 2, CG, SKIP>(both, 0..chunks(n), (theta.0, 0, kpad, q), pf);
            store(i, q, &a);
            store(i + 1, q, &b);
        }
    }
    for i in pairs..rows {
        for q in 0..kpad / CG {
            let pf = if q == 0 { [ahead(i)] } else { [&[][..]] };
            let [a] = rows_logits::<I, 1, CG, SKIP>(
                [&x[i * n..(i + 1) * n]],
                0..chunks(n),
                (theta.0, 0, kpad, q),
                pf,
            );
            store(i, q, &a);
        }
    }
}

impl Logits for LinearLogits {
    type Scratch = ();
    fn classes(&self) -> usize {
        self.k
    }
    fn features(&self) -> usize {
        self.n
    }
    fn work_per_row(&self) -> usize {
        self.n * lane_groups(self.k)
    }
    fn scratch(&self, _rows: usize) {}
    fn logits(&self, x: &[f32], _: &mut (), out: &mut [Lanes]) {
        linear_logits((self, x, out));
    }
}

/// Mean loss and error rate of softmax regression with weights `theta` on (X, y).
pub fn softmax_regression_loss_err(
    x: ArrayView2<'_, f32>,
    y: ArrayView1<'_, u8>,
    theta: ArrayView2<'_, f32>,
) -> Result<LossErr> {
    check_shape("theta", theta.dim(), x.ncols(), theta.ncols())?;
    check_positive("n (columns of X)", x.ncols())?;
    check_positive("k (columns of theta)", theta.ncols())?;
    loss_err_of(&LinearLogits::new(theta), x, y)
}

/// Predicted class (argmax of `X θ`) for every row of `x`.
pub fn softmax_regression_predict(
    x: ArrayView2<'_, f32>,
    theta: ArrayView2<'_, f32>,
) -> Result<Vec<u32>> {
    check_shape("theta", theta.dim(), x.ncols(), theta.ncols())?;
    check_positive("n (columns of X)", x.ncols())?;
    check_positive("k (columns of theta)", theta.ncols())?;
    predict_of(&LinearLogits::new(theta), x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Logits;
    use ndarray::Array2;

    /// Deterministic values in [-1, 1) from a seed and an index.
    fn noise(seed: u64, i: u64) -> f32 {
        let h = (seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xD1B5_4A32_D192_ED03);
        ((h >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// m×n rows in which most 16-pixel chunks are zero (some -0.0), a few
    /// rows wholly zero, and the rest noise.
    fn sparse_rows(m: usize, n: usize) -> Array2<f32> {
        Array2::from_shape_fn((m, n), |(r, p)| {
            let chunk_on = noise(1, (r * 1000 + p / LANES) as u64) > 0.3;
            if r % 7 == 3 || !chunk_on {
                if p % 3 == 0 {
                    -0.0
                } else {
                    0.0
                }
            } else if p % 5 == 0 {
                0.0
            } else {
                noise(2, (r * n + p) as u64)
            }
        })
    }

    #[test]
    fn an_epoch_whose_second_thread_cannot_start_runs_on_one() {
        let (m, n, k) = (3000, 784, 10);
        let x = sparse_rows(m, n);
        let y = ndarray::Array1::from_shape_fn(m, |i| (i * 7 % k) as u8);
        let sgd = Sgd {
            lr: 0.1,
            batch: 100,
        };
        let mut alone = Array2::<f32>::zeros((n, k));
        let mut team = alone.clone();
        let (result, refused) = crate::parallel::with_spawn_limit(0, || {
            softmax_regression_epoch(x.view(), y.view(), alone.view_mut(), sgd)
        });
        result.expect("the epoch runs on the calling thread");
        softmax_regression_epoch(x.view(), y.view(), team.view_mut(), sgd).expect("valid");
        if crate::parallel::num_threads() > 1 {
            assert_eq!(refused, 1, "a second thread was asked for");
        }
        assert!(alone.iter().any(|&v| v != 0.0));
        assert!(alone
            .iter()
            .zip(&team)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn a_batch_beyond_the_rows_is_one_minibatch_of_them_all() {
        let (m, n, k) = (300, 40, 3);
        let x = sparse_rows(m, n);
        let y = ndarray::Array1::from_shape_fn(m, |i| (i % k) as u8);
        let shared = EpochShared::new(
            x.as_slice().unwrap(),
            y.as_slice().unwrap(),
            n,
            k,
            Sgd {
                lr: 0.1,
                batch: usize::MAX,
            },
            2,
            2,
        );
        assert_eq!(shared.batch, m, "row + batch must not overflow");
        let [huge, whole] = [usize::MAX, m].map(|batch| {
            let mut theta = Array2::<f32>::zeros((n, k));
            let sgd = Sgd { lr: 0.1, batch };
            softmax_regression_epoch(x.view(), y.view(), theta.view_mut(), sgd).expect("valid");
            theta
        });
        assert!(whole.iter().any(|&v| v != 0.0));
        assert!(huge
            .iter()
            .zip(whole.iter())
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    fn logits_bits(model: &LinearLogits, x: &Array2<f32>) -> Vec<u32> {
        let mut out = vec![[0.0; LANES]; x.nrows() * lane_groups(model.k)];
        model.logits(x.as_slice().unwrap(), &mut (), &mut out);
        out.as_flattened().iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn skipping_zero_chunks_gives_the_bits_of_every_chunk() {
        // Odd rows (the lone-row path), windows of 64 chunks and a partial
        // last chunk (n = 16·70 + 5), one to two class groups.
        for (m, n, k) in [(37, 1125, 10), (9, 784, 3), (5, 100, 14), (4, 16, 2)] {
            let x = sparse_rows(m, n);
            let theta = Array2::from_shape_fn((n, k), |(p, c)| noise(3, (p * k + c) as u64));
            let skipping = LinearLogits::new(theta.view());
            assert!(skipping.finite);
            let dense = LinearLogits {
                finite: false,
                ..LinearLogits::new(theta.view())
            };
            let bits = logits_bits(&skipping, &x);
            assert_eq!(bits, logits_bits(&dense, &x), "m {m} n {n} k {k}");
            assert!(bits.iter().any(|&b| b != 0), "m {m} n {n} k {k}");
        }
    }

    #[test]
    fn weights_that_are_not_finite_reach_every_logit_as_in_numpy() {
        // The first chunk is zero in every row: 0 · inf is NaN in every
        // row's logits, so the loss is NaN, as numpy's dense product gives.
        let mut x = sparse_rows(20, 64);
        x.slice_mut(ndarray::s![.., ..LANES]).fill(0.0);
        let y = ndarray::Array1::from_shape_fn(20, |i| (i % 4) as u8);
        let mut theta = Array2::from_shape_fn((64, 4), |(p, c)| noise(4, (p * 4 + c) as u64));
        let finite = softmax_regression_loss_err(x.view(), y.view(), theta.view()).unwrap();
        assert!(finite.loss.is_finite());
        theta[[0, 1]] = f32::INFINITY;
        let le = softmax_regression_loss_err(x.view(), y.view(), theta.view()).unwrap();
        assert!(le.loss.is_nan(), "loss {}", le.loss);
    }

    #[test]
    fn a_nan_pixel_in_an_otherwise_zero_chunk_is_multiplied() {
        let mut x = Array2::<f32>::zeros((3, 48));
        x[[1, 20]] = f32::NAN;
        let theta = Array2::from_shape_fn((48, 3), |(p, c)| noise(5, (p * 3 + c) as u64));
        let model = LinearLogits::new(theta.view());
        let mut out = vec![[0.0; LANES]; 3];
        model.logits(x.as_slice().unwrap(), &mut (), &mut out);
        assert!(out[1][..3].iter().all(|v| v.is_nan()));
        assert!(out[0][..3].iter().chain(&out[2][..3]).all(|&v| v == 0.0));
    }
}
