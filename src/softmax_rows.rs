//! What both epoch kernels and the evaluation share: the per-row softmax on
//! logits held in lane groups (k classes padded to a multiple of 16 lanes),
//! the packing of weights into lane groups, and the state the threads of an
//! epoch share.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::aligned::LineLanes;
use crate::parallel::Barrier;
use crate::sgd::{minibatches, Sgd};
use crate::simd::{mul_add_f64, Isa, Lanes, LANES};

/// What the threads of one epoch share: the data, the SGD settings, the
/// partial logits each block publishes, and the barrier they meet at.
pub(crate) struct EpochShared<'a> {
    pub x: &'a [f32],
    pub y: &'a [u8],
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub kg: usize,
    /// Rows per minibatch, at most m (so that a row index plus `batch`
    /// cannot overflow: a batch beyond m is one minibatch of all m rows).
    pub batch: usize,
    pub lr: f32,
    /// Partial logits of each block, `kg` lane groups for each of `batch`
    /// rows (rounded up to a multiple of 16), by rows or in tiles (see
    /// [`EpochPart::TILED`]), double-buffered by minibatch parity so that
    /// the next minibatch can start while other threads still read this
    /// one.
    pub partials: [Vec<RwLock<LineLanes>>; 2],
    /// Each team thread's share of the minibatch's logit gradients (its
    /// rows, see [`team_rows`]), published for the others between the two
    /// barriers of a minibatch.
    grads: Vec<RwLock<LineLanes>>,
    pub barrier: Barrier,
    /// Minibatch from which thread 0 works alone (usize::MAX: never).
    solo_from: AtomicUsize,
    /// The minibatch at which thread 0 calls the team back together after
    /// working alone (usize::MAX: the epoch is over), set before it counts
    /// up `calls` and wakes the waiting threads with `called`.
    resume_at: AtomicUsize,
    calls: Mutex<u64>,
    called: Condvar,
    /// Thread 0 works alone for [`FIRST_SOLO`] · 4^level before it calls
    /// the team back: the process-wide [`SOLO_LEVEL`] when the epoch
    /// starts, written back when it ends.
    pub solo_level: AtomicU32,
}

impl<'a> EpochShared<'a> {
    /// `x` is m×n row-major, `y` holds m labels below `k`; `blocks` partial
    /// sums are published per minibatch by `threads` threads.
    pub fn new(
        x: &'a [f32],
        y: &'a [u8],
        n: usize,
        k: usize,
        sgd: Sgd,
        blocks: usize,
        threads: usize,
    ) -> Self {
        let m = y.len();
        let kg = lane_groups(k);
        let rows = sgd.batch.min(m);
        let padded = rows.next_multiple_of(LANES);
        EpochShared {
            x,
            y,
            m,
            n,
            k,
            kg,
            batch: sgd.batch.min(m.max(1)),
            lr: sgd.lr,
            partials: [0, 1].map(|_| {
                (0..blocks)
                    .map(|_| RwLock::new(LineLanes::zeros(padded * kg)))
                    .collect()
            }),
            grads: (0..threads)
                .map(|_| RwLock::new(LineLanes::zeros(rows.div_ceil(threads) * kg)))
                .collect(),
            barrier: Barrier::new(threads),
            solo_from: AtomicUsize::new(usize::MAX),
            resume_at: AtomicUsize::new(usize::MAX),
            calls: Mutex::new(0),
            called: Condvar::new(),
            solo_level: AtomicU32::new(SOLO_LEVEL.load(Ordering::Relaxed)),
        }
    }
}

impl EpochShared<'_> {
    /// Wakes the threads waiting for thread 0 to call the team back.
    fn call_team(&self) {
        *self.calls.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.called.notify_all();
    }

    /// Makes the team disband from minibatch `index` on, as if a thread had
    /// been stopped, with thread 0 alone for [`solo_time`]`(level)`.
    #[cfg(test)]
    pub fn disband_from(&self, index: usize, level: u32) {
        self.solo_from.store(index, Ordering::Relaxed);
        self.solo_level.store(level, Ordering::Relaxed);
    }

    /// How many times thread 0 woke the others: it called the team back,
    /// or, alone at the end of the epoch, sent them home.
    #[cfg(test)]
    pub fn calls(&self) -> u64 {
        *self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sends the threads waiting to be called back home if thread 0 panics, so
/// that the panic reaches the caller instead of a join that never returns.
struct EndOnPanic<'s, 'a>(&'s EpochShared<'a>);

impl Drop for EndOnPanic<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.resume_at.store(usize::MAX, Ordering::Release);
            self.0.call_team();
        }
    }
}

/// One thread's share of an epoch: its blocks' state, stepped in two halves
/// around the point where every block's partial logits are known.
pub(crate) trait EpochPart: Send {
    /// What the model's parts share besides the [`EpochShared`] state.
    type Extra: Sync + ?Sized;
    /// Whether [`EpochPart::prepare`] publishes something every part's
    /// forward half reads, so that the team meets between the two.
    const SHARES_PREPARED: bool = false;
    /// Whether the partial logits and the logit gradients are held in tiles
    /// (see [`tiled_gradients`]) and every team thread takes the softmax of
    /// every row itself, so that the team meets once a minibatch, or by
    /// rows, each thread taking the softmax of its share of the rows and
    /// meeting again to share them.
    const TILED: bool = false;
    /// Work on minibatch `rows` that comes before any part's forward half.
    #[inline(always)]
    fn prepare<I: Isa>(
        &mut self,
        _sh: &EpochShared<'_>,
        _extra: &Self::Extra,
        _rows: Range<usize>,
        _parity: usize,
    ) {
    }
    /// Computes and publishes this part's partial logits for `rows`.
    fn forward<I: Isa>(
        &mut self,
        sh: &EpochShared<'_>,
        extra: &Self::Extra,
        rows: Range<usize>,
        parity: usize,
    );
    /// Updates this part's weights from the minibatch's logit gradients
    /// (`parity` as in `forward`).
    fn backward<I: Isa>(
        &mut self,
        sh: &EpochShared<'_>,
        extra: &Self::Extra,
        rows: Range<usize>,
        parity: usize,
        g: &[Lanes],
    );
    /// Fewer, wider parts that step all of `parts` (consecutive, every
    /// block of the epoch, in order) with the same sums, for a thread that
    /// steps them alone; or none, to step `parts` themselves. Worth it where
    /// a part's cost is not its blocks' alone (the network: a part walks the
    /// minibatch's X once per tile of its hidden units, however few they
    /// are). Called at a minibatch's start.
    fn merge<'p>(_parts: impl Iterator<Item = &'p Self>) -> Vec<Self>
    where
        Self: Sized + 'p,
    {
        Vec::new()
    }
    /// Hands the state of the parts [`EpochPart::merge`] made back to the
    /// parts they were made from (the same, in the same order). Called at a
    /// minibatch's start.
    fn split<'p>(_merged: Vec<Self>, _parts: impl Iterator<Item = &'p mut Self>)
    where
        Self: Sized + 'p,
    {
    }
}

/// A wait at the per-minibatch barrier this long means a partner thread was
/// not running (another process holds its core): a minibatch's work is tens
/// to hundreds of microseconds.
const PARTNER_DESCHEDULED: Duration = Duration::from_millis(2);

/// Minibatches over which waiting and working time are compared, counted
/// from the epoch's start or the team's last call-back.
const WINDOW: usize = 16;

/// How long thread 0 works alone after the team disbands before it calls
/// the others back, at solo level 0; each level waits 4 times longer.
const FIRST_SOLO: Duration = Duration::from_millis(2);

/// The solo level (see [`EpochShared::solo_level`]) the next epoch starts
/// at: one higher for each time a team that was called back disbanded again
/// soon — within 8 times as long as it had been alone, or within its first
/// two windows of minibatches, since a partner slowed by another process on
/// its core, without stalling, shows only over a window (a partner that
/// keeps stalling or keeps lagging) — one lower after each epoch whose team
/// never disbanded, so that on a loaded machine epochs soon stay
/// alone once disbanded, as they would without calling the team back.
static SOLO_LEVEL: AtomicU32 = AtomicU32::new(0);

/// The shortest time alone for which thread 0 merges the parts (see
/// [`EpochPart::merge`]): merging and splitting copy the weights (~0.6 ms
/// for hidden 400), which 2 ms alone does not repay. Hidden 400 on 4
/// threads and 2 cores, medians of 4 interleaved runs: merging whenever
/// the team disbanded, 517 against 471 ms an epoch without merging; merging
/// from 8 ms alone, 493 against 551 ms.
const MERGE_ALONE_FOR: Duration = Duration::from_millis(8);

/// The highest solo level: 2 ms · 4⁶ ≈ 8 s alone.
pub(crate) const MAX_SOLO_LEVEL: u32 = 6;

/// How long thread 0 works alone before it calls the team back, at solo
/// level `level`: [`FIRST_SOLO`] · 4^level.
fn solo_time(level: u32) -> Duration {
    FIRST_SOLO * 4u32.pow(level)
}

/// The minibatch loop every epoch kernel shares, run by thread `me` of
/// `parts.len()`: the parts' preparations (and a barrier if they share what
/// they prepared); forward halves; a barrier; the softmax, each thread for
/// its share of the rows and a barrier, or, for [`EpochPart::TILED`] parts,
/// each thread for every row; backward halves.
///
/// A team only pays while its threads run side by side. When a thread waits
/// at a barrier longer than a partner could need if it were running, or
/// spends more time waiting than working over a window of minibatches (a
/// partner sharing its core with another process), the team disbands two
/// minibatches later — a point every thread agrees on: the request is stored
/// before the next barrier and read after it — and thread 0 steps every part
/// alone (as the fewer parts [`EpochPart::merge`] makes, if it does) while
/// the others sleep until it calls them back. A stall can be brief (a
/// virtual CPU the host paused for a few milliseconds), so after
/// working alone for a while ([`FIRST_SOLO`] at first, 4 times longer each
/// time a team called back disbands again, see [`SOLO_LEVEL`]) thread 0
/// calls the team back at the start of a minibatch. The blocks and the order
/// their partial sums are combined in stay the same, so the result is
/// bit-identical either way; only the time differs.
#[inline(always)]
pub(crate) fn drive_epoch<I: Isa, P: EpochPart>(
    sh: &EpochShared<'_>,
    extra: &P::Extra,
    parts: &[Mutex<P>],
    me: usize,
) {
    let _poison = sh.barrier.poison_on_panic();
    let _end = (me == 0).then_some(EndOnPanic(sh));
    let mut g = LineLanes::zeros(sh.batch.min(sh.m).next_multiple_of(LANES) * sh.kg);
    let mut mine = vec![parts[me].lock().expect("no thread panicked")];
    let mut team = parts.len() > 1;
    let mut pace = Pace::new();
    // Thread 0's time alone since the team last disbanded, its solo level,
    // whether the team has disbanded in this epoch and when (and at which
    // minibatch) thread 0 last called it back; the other threads' first
    // minibatch after waiting.
    let mut alone_since = Instant::now();
    let mut level = sh.solo_level.load(Ordering::Relaxed);
    let (mut disbanded, mut called_back) = (false, None::<(Instant, usize)>);
    let mut resume = 0;
    // What thread 0 steps while alone, if the parts merge.
    let mut merged: Vec<P> = Vec::new();
    // Runs `$body` for each part this thread steps now (one loop, so that
    // the kernels are inlined once).
    macro_rules! each_part {
        ($part:ident => $body:expr) => {
            let own = if merged.is_empty() { mine.len() } else { 0 };
            let own = mine.iter_mut().take(own).map(|part| &mut **part);
            for $part in merged.iter_mut().chain(own) {
                $body
            }
        };
    }
    for (index, rows) in minibatches(sh.m, sh.batch).enumerate() {
        if index < resume {
            continue;
        }
        if team && sh.solo_from.load(Ordering::Acquire) <= index {
            team = false;
            if me != 0 {
                // Thread 0 takes this part over until it calls the team back
                // (which it can only do once it holds the part).
                let mut calls = sh.calls.lock().unwrap_or_else(PoisonError::into_inner);
                let seen = *calls;
                mine.clear();
                while *calls == seen {
                    calls = sh
                        .called
                        .wait(calls)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                drop(calls);
                resume = sh.resume_at.load(Ordering::Acquire);
                if resume == usize::MAX {
                    return;
                }
                mine.push(parts[me].lock().expect("no thread panicked"));
                (team, pace) = (true, Pace::new());
                if index < resume {
                    continue;
                }
            } else {
                mine.extend(
                    parts[1..]
                        .iter()
                        .map(|p| p.lock().expect("no thread panicked")),
                );
                if called_back.is_some_and(|(at, from)| {
                    at.elapsed() < solo_time(level) * 8 || index < from + 2 * WINDOW
                }) {
                    level = (level + 1).min(MAX_SOLO_LEVEL);
                }
                if solo_time(level) >= MERGE_ALONE_FOR {
                    merged = P::merge(mine.iter().map(|part| &**part));
                }
                (alone_since, disbanded) = (Instant::now(), true);
            }
        }
        if !team && parts.len() > 1 && alone_since.elapsed() >= solo_time(level) {
            // Stored before the others wake, and read after; they meet again
            // at this minibatch's first barrier.
            P::split(
                std::mem::take(&mut merged),
                mine.iter_mut().map(|part| &mut **part),
            );
            mine.truncate(1);
            sh.solo_from.store(usize::MAX, Ordering::Relaxed);
            sh.resume_at.store(index, Ordering::Release);
            sh.call_team();
            (team, pace, called_back) = (true, Pace::new(), Some((Instant::now(), index)));
        }
        let parity = index % 2;
        each_part!(part => part.prepare::<I>(sh, extra, rows.clone(), parity));
        if team && P::SHARES_PREPARED {
            pace.meet(&sh.barrier);
        }
        each_part!(part => part.forward::<I>(sh, extra, rows.clone(), parity));
        let kg = sh.kg;
        let b = rows.len();
        if P::TILED {
            // One meeting: once every block's partial logits are out.
            if team {
                pace.meet(&sh.barrier);
            }
            tiled_gradients::<I>(&sh.partials[parity], &mut g, sh.k, &sh.y[rows.clone()]);
        } else if !team {
            minibatch_gradients::<I>(
                &sh.partials[parity],
                &mut g,
                sh.k,
                &sh.y[rows.clone()],
                0..b,
            );
        } else {
            // Two meetings: once every block's partial logits are out, and
            // once every thread's share of the gradients is.
            pace.meet(&sh.barrier);
            let own = team_rows(b, parts.len(), me);
            minibatch_gradients::<I>(
                &sh.partials[parity],
                &mut g[own.start * kg..own.end * kg],
                sh.k,
                &sh.y[rows.start + own.start..rows.start + own.end],
                own.clone(),
            );
            sh.grads[me].write().expect("no thread panicked")[..own.len() * kg]
                .copy_from_slice(&g[own.start * kg..own.end * kg]);
            pace.meet(&sh.barrier);
            for (t, share) in sh.grads.iter().enumerate().filter(|&(t, _)| t != me) {
                let theirs = team_rows(b, parts.len(), t);
                g[theirs.start * kg..theirs.end * kg].copy_from_slice(
                    &share.read().expect("no thread panicked")[..theirs.len() * kg],
                );
            }
        }
        if team {
            pace.minibatches += 1;
            let window_done = pace.minibatches == WINDOW;
            if pace.longest > PARTNER_DESCHEDULED || (window_done && pace.waiting > pace.working) {
                // Stored before the next minibatch's first meeting, so every
                // thread reads it before minibatch index + 2 starts.
                let _ = sh.solo_from.compare_exchange(
                    usize::MAX,
                    index + 2,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            pace.longest = Duration::ZERO;
            if window_done {
                (pace.working, pace.waiting, pace.minibatches) =
                    (Duration::ZERO, Duration::ZERO, 0);
            }
        }
        each_part!(part => part.backward::<I>(sh, extra, rows.clone(), parity, &g));
    }
    if me == 0 && parts.len() > 1 {
        if !disbanded {
            level = level.saturating_sub(1);
        }
        if !team {
            // The others still wait to be called back: the epoch is over.
            P::split(
                std::mem::take(&mut merged),
                mine.iter_mut().map(|part| &mut **part),
            );
            mine.truncate(1);
            sh.resume_at.store(usize::MAX, Ordering::Release);
            sh.call_team();
        }
        sh.solo_level.store(level, Ordering::Relaxed);
        SOLO_LEVEL.store(level, Ordering::Relaxed);
    }
}

/// How a team thread's time splits between working and waiting at the
/// barrier over the current window of minibatches (and how many of the
/// window's minibatches are done), and its longest wait in the current
/// minibatch.
struct Pace {
    working: Duration,
    waiting: Duration,
    minibatches: usize,
    longest: Duration,
    since: Instant,
}

impl Pace {
    fn new() -> Self {
        Pace {
            working: Duration::ZERO,
            waiting: Duration::ZERO,
            minibatches: 0,
            longest: Duration::ZERO,
            since: Instant::now(),
        }
    }

    /// Waits for the team at `barrier`, counting the time.
    fn meet(&mut self, barrier: &Barrier) {
        self.working += self.since.elapsed();
        let waited = barrier.wait();
        self.waiting += waited;
        self.longest = self.longest.max(waited);
        self.since = Instant::now();
    }
}

/// The rows of a `b`-row minibatch whose logit gradients thread `me` of a
/// team of `threads` computes.
fn team_rows(b: usize, threads: usize, me: usize) -> Range<usize> {
    b * me / threads..b * (me + 1) / threads
}

/// Rows `rows` of `a` packed in lane groups: each row becomes `kg` groups of
/// 16 lanes, zero beyond `a`'s columns; rows past `a`'s last are zero.
pub(crate) fn pack_lane_rows(a: ArrayView2<'_, f32>, rows: Range<usize>, kg: usize) -> LineLanes {
    let mut packed = LineLanes::zeros(rows.len() * kg);
    for (row, dst) in a
        .rows()
        .into_iter()
        .skip(rows.start)
        .zip(packed.chunks_exact_mut(kg))
    {
        for (c, &v) in row.iter().enumerate() {
            dst[c / LANES][c % LANES] = v;
        }
    }
    packed
}

/// Writes lane-group rows back into rows `first..` of `a` (as many as both hold).
pub(crate) fn unpack_lane_rows(
    packed: &[Lanes],
    kg: usize,
    mut a: ArrayViewMut2<'_, f32>,
    first: usize,
) {
    for (src, mut row) in packed
        .chunks_exact(kg)
        .zip(a.rows_mut().into_iter().skip(first))
    {
        for (c, dst) in row.iter_mut().enumerate() {
            *dst = src[c / LANES][c % LANES];
        }
    }
}

/// Lane groups needed for `k` classes.
pub(crate) fn lane_groups(k: usize) -> usize {
    k.div_ceil(LANES)
}

/// The first step of [`minibatch_gradients`]' softmax: replaces the first
/// `k` logits `z` of `row` by `z − max(z)` and the padding lanes by −∞
/// (whose `exp` is 0). The maximum skips NaN (as a fold with `v > m`
/// does); it is taken lane-wise over the groups and then by halving, which
/// gives the same value in any order, but for the sign of a zero maximum,
/// which changes no difference `v − max` that `exp` can tell apart.
#[inline(always)]
fn shift_by_max(row: &mut [Lanes], k: usize) {
    let mut top = [f32::NEG_INFINITY; LANES];
    for (g, group) in row.iter().enumerate() {
        for l in 0..LANES {
            let v = group[l];
            if g * LANES + l < k && v > top[l] {
                top[l] = v;
            }
        }
    }
    let mut half = LANES / 2;
    while half > 0 {
        for l in 0..half {
            if top[l + half] > top[l] {
                top[l] = top[l + half];
            }
        }
        half /= 2;
    }
    let max = top[0];
    for (c, v) in row.as_flattened_mut().iter_mut().enumerate() {
        *v = if c < k { *v - max } else { f32::NEG_INFINITY };
    }
}

/// The last step of [`minibatch_gradients`]' softmax: divides the `k`
/// exponentials in `row` by their sum (taken in class order) and subtracts
/// 1 at `label`, which gives `softmax(z) − onehot(label)`, the gradient of
/// the row's loss with respect to its logits. Padding lanes stay 0.
#[inline(always)]
fn normalize_minus_onehot(row: &mut [Lanes], k: usize, label: u8) {
    let sum = row.as_flattened()[..k].iter().fold(0.0f32, |s, &v| s + v);
    // Each quotient is rounded once, lane-wise or not.
    for (c, v) in row.as_flattened_mut().iter_mut().enumerate() {
        *v = if c < k { *v / sum } else { 0.0 };
    }
    row.as_flattened_mut()[usize::from(label)] -= 1.0;
}

/// `exp(x)` lane by lane for `x ≤ 0` (the shifted logits of a softmax),
/// computed in double precision (`x = n·ln2 + r`, `|r| ≤ ln2/2`, the Taylor
/// polynomial of `e^r` to degree 11, `2^n` built in the exponent bits), with
/// fused multiply-adds where the instruction set has them (a fifth less time
/// for the softmax step than separate multiplies and adds), and rounded once
/// to f32: correctly rounded but for results within ~1e-14 of a tie (the
/// polynomial's error). glibc's `expf`, which `f32::exp` calls, is less
/// exact: it rounds ~0.07% of inputs the other way (exact results within
/// ~1e-10 of a tie, measured against f64 `exp`), so the epochs differ from a
/// scalar loop over `f32::exp` in the last bit of those exponentials. Below
/// −87.3 the result is 0; NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_lanes<I: Isa>(x: &Lanes) -> Lanes {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // Adding 1.5·2⁵² rounds to an integer, left in the low mantissa bits.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let mut out = [0.0f32; LANES];
    for l in 0..LANES {
        let v = f64::from(x[l]);
        let t = mul_add_f64::<I>(v, LOG2E, ROUND);
        let n = t - ROUND;
        let r = mul_add_f64::<I>(-n, LN2_LO, mul_add_f64::<I>(-n, LN2_HI, v));
        // Horner's rule on Σ r^j / j!, j = 0..=11.
        let mut p = 1.0 / 39_916_800.0;
        for d in [
            3_628_800.0,
            362_880.0,
            40_320.0,
            5_040.0,
            720.0,
            120.0,
            24.0,
            6.0,
            2.0,
            1.0,
            1.0,
        ] {
            p = mul_add_f64::<I>(p, r, 1.0 / d);
        }
        // Where the result is kept, n is in [-126, 0]: 2^n is a normal
        // double whose exponent bits are n + 1023.
        let scale =
            f64::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(1023) << 52);
        out[l] = if x[l] < -87.3 {
            0.0
        } else {
            (p * scale) as f32
        };
    }
    out
}

/// Adds one block's partial logits into `out` (or copies them, for the
/// first block), so that blocks are summed in block order.
#[inline(always)]
pub(crate) fn add_partial(out: &mut [Lanes], partial: &[Lanes], first: bool) {
    // As one run of floats, which LLVM vectorises along the run (a loop
    // over lane groups it vectorised across the groups, with gathers).
    let (out, partial) = (out.as_flattened_mut(), partial.as_flattened());
    if first {
        out.copy_from_slice(partial);
    } else {
        for (o, p) in out.iter_mut().zip(partial) {
            *o += *p;
        }
    }
}

/// Sums per-block partial logits of one row, in block order, into `out`.
#[inline(always)]
pub(crate) fn sum_partials<'a>(out: &mut [Lanes], partials: impl Iterator<Item = &'a [Lanes]>) {
    let mut first = true;
    for p in partials {
        if first {
            out.copy_from_slice(p);
            first = false;
        } else {
            add_partial(out, p, false);
        }
    }
    if first {
        out.fill([0.0; LANES]);
    }
}

/// The logit gradients `softmax(z) − onehot(y)` of rows `rows` of the
/// minibatch into `g` (rows of `kg` lane groups; `labels` are those rows'),
/// where z is the sum, in block order, of the blocks' partial logits that
/// the threads published.
#[inline(always)]
pub(crate) fn minibatch_gradients<I: Isa>(
    partials: &[std::sync::RwLock<LineLanes>],
    g: &mut [Lanes],
    k: usize,
    labels: &[u8],
    rows: Range<usize>,
) {
    let kg = lane_groups(k);
    let g = &mut g[..labels.len() * kg];
    for (index, partial) in partials.iter().enumerate() {
        let partial = partial.read().expect("no kernel thread panicked");
        // All the rows at once: both hold them row after row.
        add_partial(g, &partial[rows.start * kg..rows.end * kg], index == 0);
    }
    // The softmax a step at a time over all the rows, so that the rows'
    // exponentials (long chains of dependent operations each) overlap.
    for row in g.chunks_exact_mut(kg) {
        shift_by_max(row, k);
    }
    for group in g.iter_mut() {
        *group = exp_lanes::<I>(group);
    }
    for (row, &label) in g.chunks_exact_mut(kg).zip(labels) {
        normalize_minus_onehot(row, k, label);
    }
}

/// The logit gradients `softmax(z) − onehot(y)` of a minibatch's rows
/// (whose labels are `labels`) into `g`, in tiles: the rows in groups of
/// 16, each group `16·kg` lane groups of which the first k hold one class
/// each, lane l for the group's row l (for k ≤ 16, the 16×16 transpose of
/// the rows). z is the sum, in block order, of the blocks' partial logits,
/// which the threads published in the same tiles. Every value goes through
/// the arithmetic [`minibatch_gradients`] does on it, in the same order, so
/// the bits are the same; but 16 rows go through each step together. The
/// lanes past the last row of the final tile are computed too, from
/// whatever the buffers hold, and never read.
#[inline(always)]
pub(crate) fn tiled_gradients<I: Isa>(
    partials: &[RwLock<LineLanes>],
    g: &mut [Lanes],
    k: usize,
    labels: &[u8],
) {
    let tile = lane_groups(k) * LANES;
    let tiles = labels.len().div_ceil(LANES);
    for (index, partial) in partials.iter().enumerate() {
        let partial = partial.read().expect("no kernel thread panicked");
        for t in 0..tiles {
            let at = t * tile;
            add_partial(&mut g[at..at + k], &partial[at..at + k], index == 0);
        }
    }
    for (t, labels) in labels.chunks(LANES).enumerate() {
        softmax_tile::<I>(&mut g[t * tile..t * tile + k], labels);
    }
}

/// [`minibatch_gradients`]' softmax on one tile of [`tiled_gradients`]:
/// `z` holds the k classes' logits of 16 rows, `labels` those of the rows
/// that are real (up to 16).
#[inline(always)]
fn softmax_tile<I: Isa>(z: &mut [Lanes], labels: &[u8]) {
    // The maximum as `shift_by_max` takes it (NaN skipped): the same value
    // but for the sign of a zero, which no difference `v − max` shows.
    let mut top = [f32::NEG_INFINITY; LANES];
    for v in z.iter() {
        top = std::array::from_fn(|l| if v[l] > top[l] { v[l] } else { top[l] });
    }
    // The exponentials, summed in class order from 0.
    let mut sum = [0.0f32; LANES];
    for v in z.iter_mut() {
        *v = exp_lanes::<I>(&std::array::from_fn(|l| v[l] - top[l]));
        sum = std::array::from_fn(|l| sum[l] + v[l]);
    }
    // Each quotient minus 1 at the label, minus 0 elsewhere (which leaves
    // every quotient as it is, −0 and NaN included). The class is a float
    // counter (exact for every class a label can name: labels are bytes),
    // which also keeps LLVM from vectorising this loop across the classes,
    // with gathers and scatters, instead of across the lanes.
    let mut label = [-1.0f32; LANES];
    for (l, &y) in labels.iter().enumerate() {
        label[l] = f32::from(y);
    }
    let mut c = 0.0f32;
    for v in z.iter_mut() {
        *v = std::array::from_fn(|l| v[l] / sum[l] - if label[l] == c { 1.0 } else { 0.0 });
        c += 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::run_team;
    use crate::simd::Portable;
    use std::thread::ThreadId;

    /// A part that records which thread stepped it, minibatch by minibatch,
    /// and whose forward half stalls once, like a thread the OS stopped, and
    /// takes `lag` longer at every minibatch from `lag_from` on that its
    /// first thread steps (like a thread sharing its core), and otherwise
    /// takes `work` (sleeping). `TILED` picks the meetings: one a minibatch,
    /// or two.
    struct Recorder<const TILED: bool> {
        block: usize,
        stall_at: Option<usize>,
        lag_from: usize,
        lag: Duration,
        panic_at: Option<usize>,
        work: Duration,
        forward: Vec<(usize, ThreadId)>,
        backward: Vec<(usize, ThreadId)>,
    }

    impl<const TILED: bool> EpochPart for Recorder<TILED> {
        type Extra = ();
        const TILED: bool = TILED;
        fn forward<I: Isa>(
            &mut self,
            sh: &EpochShared<'_>,
            _: &(),
            rows: Range<usize>,
            parity: usize,
        ) {
            let index = rows.start / sh.batch;
            let owner = self
                .forward
                .first()
                .is_none_or(|&(_, t)| t == std::thread::current().id());
            assert_ne!(self.panic_at, Some(index), "the part's kernel failed");
            if self.stall_at == Some(index) {
                std::thread::sleep(Duration::from_millis(20));
            } else if owner && index >= self.lag_from {
                std::thread::sleep(self.lag);
            }
            std::thread::sleep(self.work);
            let mut partial = sh.partials[parity][self.block].write().unwrap();
            partial
                .iter_mut()
                .for_each(|p| *p = [self.block as f32; LANES]);
            self.forward.push((index, std::thread::current().id()));
        }
        fn backward<I: Isa>(
            &mut self,
            sh: &EpochShared<'_>,
            _: &(),
            rows: Range<usize>,
            _: usize,
            _: &[Lanes],
        ) {
            self.backward
                .push((rows.start / sh.batch, std::thread::current().id()));
        }
    }

    /// Partial logits of `blocks` blocks for `rows` rows of `k` classes, by
    /// rows and in tiles: values whose sums and exponentials round, with
    /// zeros of both signs, huge values, infinities and NaN among them.
    fn both_layouts(blocks: usize, rows: usize, k: usize) -> [Vec<RwLock<LineLanes>>; 2] {
        let kg = lane_groups(k);
        let value = |b: usize, i: usize, c: usize| -> f32 {
            let h = (b * 7919 + i * 104_729 + c * 1_299_709) % 997;
            match h {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => f32::NEG_INFINITY,
                3 => -0.0,
                4 => 0.0,
                5 => 3.0e4,
                6 => -3.0e4,
                _ => ((h as f32) * 0.731).sin() * 40.0 + (i % 3) as f32 * 1e-3,
            }
        };
        let by_rows = (0..blocks)
            .map(|b| {
                let mut v = LineLanes::zeros(rows * kg);
                for i in 0..rows {
                    for c in 0..k {
                        v[i * kg + c / LANES][c % LANES] = value(b, i, c);
                    }
                }
                RwLock::new(v)
            })
            .collect();
        let tiled = (0..blocks)
            .map(|b| {
                let mut v = LineLanes::zeros(rows.next_multiple_of(LANES) * kg);
                for i in 0..rows {
                    for c in 0..k {
                        v[i / LANES * kg * LANES + c][i % LANES] = value(b, i, c);
                    }
                }
                RwLock::new(v)
            })
            .collect();
        [by_rows, tiled]
    }

    #[test]
    fn tiled_gradients_give_the_bits_of_the_row_layout() {
        let (mut finite, mut all) = (0, 0);
        for k in [1, 2, 3, 10, 16, 17, 40] {
            let kg = lane_groups(k);
            for rows in [1, 2, 15, 16, 17, 50, 100] {
                for blocks in [1, 2, 3] {
                    let [by_rows, tiled] = both_layouts(blocks, rows, k);
                    let labels: Vec<u8> = (0..rows).map(|i| ((i * 7 + 3) % k) as u8).collect();
                    let mut want = vec![[0.0; LANES]; rows * kg];
                    minibatch_gradients::<Portable>(&by_rows, &mut want, k, &labels, 0..rows);
                    let mut got = vec![[0.0; LANES]; rows.next_multiple_of(LANES) * kg];
                    tiled_gradients::<Portable>(&tiled, &mut got, k, &labels);
                    for i in 0..rows {
                        for c in 0..kg * LANES {
                            let want = want[i * kg + c / LANES][c % LANES];
                            let got = got[i / LANES * kg * LANES + c][i % LANES];
                            // The padding classes stay 0 in both.
                            assert_eq!(
                                got.to_bits(),
                                want.to_bits(),
                                "k {k}, rows {rows}, blocks {blocks}, row {i}, class {c}: {got} vs {want}"
                            );
                        }
                    }
                    finite += want.as_flattened().iter().filter(|v| v.is_finite()).count();
                    all += want.len() * LANES;
                }
            }
        }
        // Mostly ordinary gradients, not NaN everywhere.
        assert!(finite * 10 > all * 9, "{finite} of {all} finite");
    }

    #[test]
    fn exp_lanes_is_f32_exp_but_at_near_ties() {
        exp_lanes_rounds_to_nearest::<Portable>();
    }

    /// The same with fused multiply-adds, as the AVX2 and AVX-512 builds
    /// compute it (`f64::mul_add` rounds once on any CPU).
    #[test]
    fn exp_lanes_with_fma_is_f32_exp_but_at_near_ties() {
        exp_lanes_rounds_to_nearest::<crate::simd::Avx2>();
    }

    fn exp_lanes_rounds_to_nearest<I: Isa>() {
        let (mut differ, mut count) = (0usize, 0usize);
        let mut v = -87.2f32;
        while v <= 0.0 {
            // Sixteen different inputs a call, each lane checked.
            let lanes: Lanes = std::array::from_fn(|l| (v + l as f32 * 0.0053).min(0.0));
            for (&x, got) in lanes.iter().zip(exp_lanes::<I>(&lanes)) {
                let exact = f64::from(x).exp();
                // Never more than half an ulp and a hair from the exact value.
                let ulp = f64::from(f32::from_bits(got.to_bits() + 1) - got);
                assert!(
                    (f64::from(got) - exact).abs() <= 0.5001 * ulp,
                    "exp({x}) = {got}"
                );
                differ += usize::from(got != x.exp());
                count += 1;
            }
            v += 0.000_131 * LANES as f32;
        }
        // Measured: 0.07% of these inputs round differently from f32::exp
        // (glibc's misroundings of results within ~1e-10 of a tie, while
        // this one stays within 0.5001 ulp); a faulty polynomial or range
        // reduction gets many more.
        assert!(
            differ * 500 < count,
            "{differ} of {count} differ from f32::exp"
        );
        let edge = exp_lanes::<I>(&[
            0.0,
            -87.4,
            f32::NEG_INFINITY,
            f32::NAN,
            -1e-9,
            -87.2,
            -1.0,
            -2.5,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
        ]);
        assert_eq!(edge[0], 1.0);
        assert_eq!(edge[1], 0.0);
        assert_eq!(edge[2], 0.0);
        assert!(edge[3].is_nan());
        assert_eq!(edge[4], 1.0);
        assert!(edge[5] > 0.0);
    }

    /// Each call-back test, with two meetings a minibatch and with one.
    macro_rules! with_both_meetings {
        ($($test:ident),* $(,)?) => {
            mod both_meetings {
                $(
                    #[test]
                    fn $test() {
                        super::$test::<false>();
                        super::$test::<true>();
                    }
                )*
            }
        };
    }
    with_both_meetings!(
        a_stalled_partner_hands_its_part_to_thread_zero,
        the_team_comes_back_after_a_brief_stall,
        a_partner_that_keeps_stalling_is_left_alone_longer_each_time,
        a_slow_partner_is_left_alone_longer_each_time,
        a_panic_while_alone_reaches_the_caller,
    );

    /// How an epoch of two [`Recorder`]s goes: part 1's first thread stalls
    /// 20 ms at minibatch 3 (and 5 ms at each later one it steps, with
    /// `keep_stalling`; or, with `lag` instead, takes that much longer at
    /// every minibatch it steps, from the first, and never stalls), part 1
    /// panics at `panic_at`, every forward half takes `work`, and thread 0
    /// starts at solo level `level`.
    #[derive(Default)]
    struct Script {
        minibatches: usize,
        level: u32,
        keep_stalling: bool,
        lag: Option<Duration>,
        panic_at: Option<usize>,
        work: Duration,
    }

    /// Runs `script`'s epoch (10 rows a minibatch) on two threads. Returns
    /// the parts, each checked to have had both halves of every minibatch
    /// once and in order, thread 0's id, and the solo level at the end; or
    /// the panic that came out of the team.
    fn run_script<const TILED: bool>(
        script: Script,
    ) -> std::thread::Result<(Vec<Recorder<TILED>>, ThreadId, u32)> {
        let batch = 10;
        let m = script.minibatches * batch;
        let (x, y) = (vec![0.0f32; m], vec![0u8; m]);
        let sh = EpochShared::new(&x, &y, 1, 2, Sgd { lr: 0.1, batch }, 2, 2);
        // Not the level other tests' epochs may have left process-wide.
        sh.solo_level.store(script.level, Ordering::Relaxed);
        let parts: Vec<Mutex<Recorder<TILED>>> = (0..2)
            .map(|block| {
                let (stall_at, lag_from, lag) = match (script.lag, script.keep_stalling) {
                    (Some(lag), _) => (None, 0, lag),
                    (None, true) => (Some(3), 4, Duration::from_millis(5)),
                    (None, false) => (Some(3), usize::MAX, Duration::ZERO),
                };
                Mutex::new(Recorder {
                    block,
                    stall_at: stall_at.filter(|_| block == 1),
                    lag_from,
                    lag: if block == 1 { lag } else { Duration::ZERO },
                    panic_at: script.panic_at.filter(|_| block == 1),
                    work: script.work,
                    forward: Vec::new(),
                    backward: Vec::new(),
                })
            })
            .collect();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_team(2, |me| {
                drive_epoch::<Portable, Recorder<TILED>>(&sh, &(), &parts, me)
            })
        }))?
        .expect("both threads start");
        let parts: Vec<Recorder<TILED>> =
            parts.into_iter().map(|p| p.into_inner().unwrap()).collect();
        let all: Vec<usize> = (0..script.minibatches).collect();
        for part in &parts {
            let seen: Vec<usize> = part.forward.iter().map(|&(i, _)| i).collect();
            assert_eq!(seen, all, "every minibatch once, in order");
            let seen: Vec<usize> = part.backward.iter().map(|&(i, _)| i).collect();
            assert_eq!(seen, all);
        }
        let zero = parts[0].forward[0].1;
        assert!(parts[0].forward.iter().all(|&(_, t)| t == zero));
        for (f, b) in parts[1].forward.iter().zip(&parts[1].backward) {
            assert_eq!(f.1, b.1, "both halves of minibatch {} by one thread", f.0);
        }
        Ok((parts, zero, sh.solo_level.load(Ordering::Relaxed)))
    }

    fn a_stalled_partner_hands_its_part_to_thread_zero<const TILED: bool>() {
        // Alone for seconds: thread 0 keeps both parts to the epoch's end.
        let (parts, zero, _) = run_script::<TILED>(Script {
            minibatches: 10,
            level: MAX_SOLO_LEVEL,
            ..Script::default()
        })
        .expect("no panic");
        assert_ne!(parts[1].forward[0].1, zero, "a team at first");
        // Thread 0 waited 20 ms at minibatch 3's barrier, so from minibatch
        // 5 on at the latest (earlier if the test machine stalled thread 1
        // before) it steps part 1 itself, both halves of every minibatch.
        let from = parts[1]
            .forward
            .iter()
            .position(|&(_, thread)| thread == zero)
            .expect("the team disbanded");
        assert!((2..=5).contains(&from), "disbanded from minibatch {from}");
        for &(i, thread) in parts[1].forward.iter().chain(&parts[1].backward) {
            assert_eq!(thread == zero, i >= from, "minibatch {i}");
        }
    }

    fn the_team_comes_back_after_a_brief_stall<const TILED: bool>() {
        // 40 minibatches of 1 ms per part: after the stall, thread 0 works
        // alone (2 ms a minibatch) for FIRST_SOLO, then calls thread 1 back.
        let (parts, zero, _) = run_script::<TILED>(Script {
            minibatches: 40,
            work: Duration::from_millis(1),
            ..Script::default()
        })
        .expect("no panic");
        let by_zero: Vec<bool> = parts[1].forward.iter().map(|&(_, t)| t == zero).collect();
        let from = by_zero.iter().position(|&z| z).expect("the team disbanded");
        assert!((2..=5).contains(&from), "disbanded from minibatch {from}");
        // Alone, thread 0 takes ~2 ms a minibatch, so it calls the team back
        // within a few (more, if the test machine stalls thread 1 again).
        let back = from
            + by_zero[from..]
                .iter()
                .position(|&z| !z)
                .expect("the team came back");
        assert!(back <= from + 10, "alone from minibatch {from} to {back}");
    }

    fn a_partner_that_keeps_stalling_is_left_alone_longer_each_time<const TILED: bool>() {
        // Thread 1 stalls 5 ms at every minibatch it steps from the 4th on:
        // each time thread 0 calls it back the team disbands again, and
        // thread 0 works alone 4 times longer (2, 8, 32 ms: about 1, 4 and 16
        // minibatches of 2 ms), so the epoch ends alone at level 3 or so.
        let (parts, zero, level) = run_script::<TILED>(Script {
            minibatches: 60,
            keep_stalling: true,
            work: Duration::from_millis(1),
            ..Script::default()
        })
        .expect("no panic");
        assert_left_alone_longer_each_time(&parts[1], zero, level, 60);
    }

    fn a_slow_partner_is_left_alone_longer_each_time<const TILED: bool>() {
        // Thread 1 takes 2.5 ms a minibatch where thread 0 takes 1 ms, but
        // never stalls: no single wait reaches PARTNER_DESCHEDULED, so only
        // the window of minibatches shows it, each time a window after
        // thread 0 calls it back, which is longer than 8 times FIRST_SOLO.
        // It must still count as disbanding again soon: alone 2, 8, 32 ms
        // (about 1, 4 and 16 minibatches), so the epoch ends alone.
        let (parts, zero, level) = run_script::<TILED>(Script {
            minibatches: 100,
            lag: Some(Duration::from_micros(1500)),
            work: Duration::from_millis(1),
            ..Script::default()
        })
        .expect("no panic");
        assert_left_alone_longer_each_time(&parts[1], zero, level, 100);
    }

    /// Asserts that thread `zero` stepped `part` alone at least three times,
    /// that the solo level rose to 2 or more, and that the epoch of
    /// `minibatches` minibatches ended alone.
    fn assert_left_alone_longer_each_time<const TILED: bool>(
        part: &Recorder<TILED>,
        zero: ThreadId,
        level: u32,
        minibatches: usize,
    ) {
        let alone = stretches_alone(part, zero);
        assert!(alone.len() >= 3, "alone from, to: {alone:?}");
        assert!(level >= 2, "level {level}, alone from, to: {alone:?}");
        assert_eq!(
            alone.last().unwrap().1,
            minibatches,
            "the epoch ends alone: {alone:?}"
        );
    }

    /// The stretches of minibatches, as ranges, in which thread `zero`
    /// stepped `part`.
    fn stretches_alone<const TILED: bool>(
        part: &Recorder<TILED>,
        zero: ThreadId,
    ) -> Vec<(usize, usize)> {
        let mut stretches: Vec<(usize, usize)> = Vec::new();
        for (i, &(_, t)) in part.forward.iter().enumerate() {
            match (t == zero, stretches.last_mut()) {
                (true, Some((_, end))) if *end == i => *end = i + 1,
                (true, _) => stretches.push((i, i + 1)),
                _ => {}
            }
        }
        stretches
    }

    fn a_panic_while_alone_reaches_the_caller<const TILED: bool>() {
        // Thread 1 stalls and waits to be called back; thread 0 then fails
        // stepping part 1 alone: the panic must come out of run_team, not
        // leave thread 1 waiting for a call that never comes.
        let outcome = run_script::<TILED>(Script {
            minibatches: 10,
            level: MAX_SOLO_LEVEL,
            panic_at: Some(8),
            ..Script::default()
        });
        assert!(outcome.is_err(), "the panic reached the caller");
    }
}
