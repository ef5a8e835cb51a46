//! Softmax regression: one linear layer `X θ` trained by minibatch SGD.
//!
//! The epoch kernel skips the zeros of X (see [`crate::sparse`]) and splits
//! each minibatch between threads by fixed blocks of input pixels: each
//! thread computes its blocks' partial logits, the threads meet once, every
//! thread sums the partials in block order and takes the softmax, then each
//! updates the rows of θ for its own pixels.

use std::ops::Range;
use std::sync::Mutex;

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};

use crate::error::Result;
use crate::eval::{loss_err_of, predict_of, Logits};
use crate::loss::LossErr;
use crate::parallel::{run_team, split_blocks, threads_for};
use crate::sgd::{check_labels, check_positive, check_rows, check_shape, Sgd};
use crate::simd::{axpy_n, mul_add, multiversion, Isa, Lanes, LANES};
use crate::softmax_rows::{
    drive_epoch, lane_groups, pack_lane_rows, sum_partials, unpack_lane_rows, EpochPart,
    EpochShared,
};
use crate::sparse::Csr;

/// Input pixels are split into this many fixed blocks (fewer when n is
/// small), the unit of work of a thread and of the partial sums.
const PIXEL_BLOCKS: usize = 8;

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
    let parts: Vec<Mutex<SoftmaxPart>> = split_blocks(blocks.len(), threads)
        .into_iter()
        .map(|owned| {
            Mutex::new(SoftmaxPart::new(
                theta.view(),
                &blocks,
                owned,
                sgd.batch.min(m),
            ))
        })
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
    run_team(threads, |me| softmax_worker((&shared, &blocks, &parts, me)));
    for part in parts {
        let part = part.into_inner().expect("the workers finished");
        unpack_lane_rows(&part.theta, lane_groups(k), theta.view_mut(), part.j0);
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

/// One thread's share: the pixel blocks it owns and their rows of θ.
struct SoftmaxPart {
    blocks: Range<usize>,
    j0: usize,
    theta: Vec<Lanes>,
    grad: Vec<Lanes>,
    csr: Csr,
}

impl SoftmaxPart {
    fn new(
        theta: ArrayView2<'_, f32>,
        all: &[Range<usize>],
        owned: Range<usize>,
        batch: usize,
    ) -> Self {
        let kg = lane_groups(theta.ncols());
        let (j0, j1) = (all[owned.start].start, all[owned.end - 1].end);
        SoftmaxPart {
            csr: Csr::new(batch, j1 - j0),
            blocks: owned,
            j0,
            theta: pack_lane_rows(theta, j0..j1, kg),
            grad: vec![[0.0; LANES]; (j1 - j0) * kg],
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

    /// Scans this part's pixels of the minibatch and publishes the partial
    /// logits of its pixel blocks.
    #[inline(always)]
    fn forward<I: Isa>(
        &mut self,
        sh: &EpochShared<'_>,
        blocks: &[Range<usize>],
        rows: Range<usize>,
        parity: usize,
    ) {
        let (n, kg, b) = (sh.n, sh.kg, rows.len());
        let xb = &sh.x[rows.start * n..rows.end * n];
        let next = &sh.x[rows.end * n..(rows.end + sh.batch).min(sh.m) * n];
        let own = &blocks[self.blocks.clone()];
        self.csr.fill::<I>(xb, next, n, own);
        for (s, cols) in own.iter().enumerate() {
            let theta = &self.theta[(cols.start - self.j0) * kg..(cols.end - self.j0) * kg];
            let mut partial = sh.partials[parity][self.blocks.start + s]
                .write()
                .expect("no thread panicked");
            for (i, out) in partial.chunks_exact_mut(kg).take(b).enumerate() {
                let (c, v) = self.csr.segment(i, s);
                sparse_dot::<I>(c, v, theta, kg, out);
            }
        }
    }

    /// θ ← θ − lr/b · Xbᵀ G for this part's pixels, the gradient summed
    /// first as numpy does.
    #[inline(always)]
    fn backward<I: Isa>(
        &mut self,
        sh: &EpochShared<'_>,
        blocks: &[Range<usize>],
        rows: Range<usize>,
        g: &[Lanes],
    ) {
        let (kg, b) = (sh.kg, rows.len());
        let own = &blocks[self.blocks.clone()];
        let (grad, csr) = (&mut self.grad[..], &self.csr);
        for (s, cols) in own.iter().enumerate() {
            let grad = &mut grad[(cols.start - self.j0) * kg..(cols.end - self.j0) * kg];
            for (i, gi) in g.chunks_exact(kg).take(b).enumerate() {
                let (c, v) = csr.segment(i, s);
                if kg == 1 {
                    let gi = &gi[0];
                    for (&j, &x) in c.iter().zip(v) {
                        axpy_n::<I, LANES>(&mut grad[j as usize], x, gi);
                    }
                } else {
                    for (&j, &x) in c.iter().zip(v) {
                        let r = j as usize * kg;
                        for (grad, g) in grad[r..r + kg].iter_mut().zip(gi) {
                            axpy_n::<I, LANES>(grad, x, g);
                        }
                    }
                }
            }
        }
        let step = -(sh.lr / b as f32);
        for (t, grad) in self.theta.iter_mut().zip(self.grad.iter_mut()) {
            for (t, g) in t.iter_mut().zip(grad.iter()) {
                *t = mul_add::<I>(step, *g, *t);
            }
            *grad = [0.0; LANES];
        }
    }
}

/// `out = Σ_e vals[e] · theta[cols[e]]` over lane groups, with four
/// accumulators to hide the latency of the multiply-adds.
#[inline(always)]
fn sparse_dot<I: Isa>(cols: &[u32], vals: &[f32], theta: &[Lanes], kg: usize, out: &mut [Lanes]) {
    if kg == 1 {
        // The common case (k <= 16): no stride arithmetic.
        let mut acc = [[0.0f32; LANES]; 4];
        let split = cols.len() / 4 * 4;
        for (c4, v4) in cols[..split]
            .chunks_exact(4)
            .zip(vals[..split].chunks_exact(4))
        {
            for u in 0..4 {
                axpy_n::<I, LANES>(&mut acc[u], v4[u], &theta[c4[u] as usize]);
            }
        }
        for (&c, &v) in cols[split..].iter().zip(&vals[split..]) {
            axpy_n::<I, LANES>(&mut acc[0], v, &theta[c as usize]);
        }
        for l in 0..LANES {
            out[0][l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
        }
        return;
    }
    for (g, out) in out.iter_mut().enumerate() {
        let mut acc = [[0.0f32; LANES]; 4];
        let split = cols.len() / 4 * 4;
        for (c4, v4) in cols[..split]
            .chunks_exact(4)
            .zip(vals[..split].chunks_exact(4))
        {
            for u in 0..4 {
                axpy_n::<I, LANES>(&mut acc[u], v4[u], &theta[c4[u] as usize * kg + g]);
            }
        }
        for (&c, &v) in cols[split..].iter().zip(&vals[split..]) {
            axpy_n::<I, LANES>(&mut acc[0], v, &theta[c as usize * kg + g]);
        }
        for l in 0..LANES {
            out[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
        }
    }
}

/// Logits `X θ` of softmax regression, for evaluation.
pub(crate) struct LinearLogits {
    k: usize,
    kg: usize,
    blocks: Vec<Range<usize>>,
    theta: Vec<Lanes>,
}

impl LinearLogits {
    pub fn new(theta: ArrayView2<'_, f32>) -> Self {
        let kg = lane_groups(theta.ncols());
        LinearLogits {
            k: theta.ncols(),
            kg,
            blocks: pixel_blocks(theta.nrows()),
            theta: pack_lane_rows(theta, 0..theta.nrows(), kg),
        }
    }
}

pub(crate) struct LinearScratch {
    csr: Csr,
    partials: Vec<Vec<Lanes>>,
}

multiversion! {
    fn linear_logits(args: (&LinearLogits, &[f32], &mut LinearScratch, &mut [Lanes])) -> () => linear_logits_generic
}

#[inline(always)]
fn linear_logits_generic<I: Isa>(
    (model, x, scratch, out): (&LinearLogits, &[f32], &mut LinearScratch, &mut [Lanes]),
) {
    let n = model.blocks.last().map_or(0, |b| b.end);
    let kg = model.kg;
    let rows = x.len() / n;
    scratch.partials.resize_with(model.blocks.len(), Vec::new);
    scratch.csr.fill::<I>(x, &[], n, &model.blocks);
    for (s, (blk, partial)) in model
        .blocks
        .iter()
        .zip(scratch.partials.iter_mut())
        .enumerate()
    {
        partial.resize(rows * kg, [0.0; LANES]);
        let theta = &model.theta[blk.start * kg..blk.end * kg];
        for (i, p) in partial.chunks_exact_mut(kg).enumerate() {
            let (c, v) = scratch.csr.segment(i, s);
            sparse_dot::<I>(c, v, theta, kg, p);
        }
    }
    for (i, o) in out.chunks_exact_mut(kg).take(rows).enumerate() {
        sum_partials(o, scratch.partials.iter().map(|p| &p[i * kg..(i + 1) * kg]));
    }
}

impl Logits for LinearLogits {
    type Scratch = LinearScratch;
    fn classes(&self) -> usize {
        self.k
    }
    fn features(&self) -> usize {
        self.blocks.last().map_or(0, |b| b.end)
    }
    fn work_per_row(&self) -> usize {
        self.features() * self.kg
    }
    fn scratch(&self, rows: usize) -> LinearScratch {
        LinearScratch {
            csr: Csr::new(rows, self.features()),
            partials: Vec::new(),
        }
    }
    fn logits(&self, x: &[f32], scratch: &mut LinearScratch, out: &mut [Lanes]) {
        linear_logits((self, x, scratch, out));
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
