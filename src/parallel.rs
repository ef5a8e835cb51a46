//! Threads for the kernels: how many, and the barrier they meet at.
//!
//! SGD is sequential across minibatches, so the epochs split the work of
//! each minibatch between threads (scoped threads, started once per call)
//! that meet at a barrier once per minibatch. Every split is over fixed
//! blocks whose partial results are combined in a fixed order, so the
//! result is bit-identical for any number of threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Threads the kernels use: set by [`set_num_threads`], else the
/// `SML_NUM_THREADS` environment variable (a number, or `all`), else every
/// available core. An epoch whose threads cannot run side by side (another
/// process holds a core) falls back to one thread within a few minibatches,
/// so extra threads cost at most that much when cores are busy.
pub fn num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = match std::env::var("SML_NUM_THREADS").as_deref().map(str::trim) {
                Ok("all") => all_cores(),
                Ok(v) => v
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .unwrap_or_else(all_cores),
                Err(_) => all_cores(),
            };
            NUM_THREADS.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sets the number of threads the kernels use; 0 restores the default.
/// Results do not depend on it.
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n, Ordering::Relaxed);
    if n == 0 {
        num_threads();
    }
}

/// Threads worth using for `work` multiply-adds split into at most `parts`
/// pieces: small problems are not worth waking a second thread for.
pub(crate) fn threads_for(work: usize, parts: usize) -> usize {
    const WORK_PER_THREAD: usize = 2_000_000;
    num_threads()
        .min(parts)
        .min(work / WORK_PER_THREAD + 1)
        .max(1)
}

/// A reusable barrier for a fixed number of threads. Waiters spin briefly
/// (a minibatch takes microseconds), then yield the core, then sleep, so that
/// a loaded machine is not starved by threads waiting on each other.
pub(crate) struct Barrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    poisoned: AtomicBool,
}

/// Marks a barrier poisoned if its thread unwinds, so that the others stop
/// waiting for it and the panic reaches the caller instead of a deadlock.
pub(crate) struct PoisonOnPanic<'a>(&'a Barrier);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poisoned.store(true, Ordering::Release);
        }
    }
}

impl Barrier {
    pub fn new(threads: usize) -> Self {
        Barrier {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    /// A guard to hold while working between `wait`s.
    pub fn poison_on_panic(&self) -> PoisonOnPanic<'_> {
        PoisonOnPanic(self)
    }

    /// Waits for every thread; returns how long this one waited.
    pub fn wait(&self) -> Duration {
        if self.threads <= 1 {
            return Duration::ZERO;
        }
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return Duration::ZERO;
        }
        let started = Instant::now();
        let mut spins = 0u32;
        let mut yielding_since: Option<Instant> = None;
        while self.generation.load(Ordering::Acquire) == generation {
            if self.poisoned.load(Ordering::Acquire) {
                panic!("another kernel thread panicked");
            }
            if spins < 4000 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                let since = *yielding_since.get_or_insert_with(Instant::now);
                if since.elapsed() < Duration::from_millis(2) {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
        started.elapsed()
    }
}

/// Splits `parts` fixed blocks into `threads` contiguous ranges of nearly
/// equal size.
pub(crate) fn split_blocks(parts: usize, threads: usize) -> Vec<std::ops::Range<usize>> {
    (0..threads)
        .map(|t| (parts * t / threads)..(parts * (t + 1) / threads))
        .collect()
}

/// Runs `work(0)` on the calling thread and `work(1)` … `work(threads - 1)`
/// on scoped threads; returns when all are done (re-raising any panic).
pub(crate) fn run_team(threads: usize, work: impl Fn(usize) + Sync) {
    std::thread::scope(|s| {
        let work = &work;
        for me in 1..threads {
            s.spawn(move || work(me));
        }
        work(0);
    });
}

/// Runs `work` on every part, part 0 on the calling thread and the others on
/// scoped threads; returns when all are done (re-raising any panic).
pub(crate) fn run_parts<P: Send>(parts: &mut [P], work: impl Fn(&mut P) + Sync) {
    match parts {
        [] => {}
        [only] => work(only),
        [first, rest @ ..] => std::thread::scope(|s| {
            for part in rest.iter_mut() {
                let work = &work;
                s.spawn(move || work(part));
            }
            work(first);
        }),
    }
}
