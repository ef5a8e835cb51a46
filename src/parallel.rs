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
///
/// A team's threads wait for each other, so none starts working until every
/// thread is running: if one cannot be started (a limit on threads or
/// processes, memory), those already started return without working and
/// the error comes back, the work untouched, for the caller to do with one
/// thread instead of waiting forever for a partner that never came.
pub(crate) fn run_team(threads: usize, work: impl Fn(usize) + Sync) -> std::io::Result<()> {
    const WAIT: u8 = 0;
    const GO: u8 = 1;
    const STOP: u8 = 2;
    let gate = std::sync::atomic::AtomicU8::new(WAIT);
    std::thread::scope(|s| {
        let (work, gate) = (&work, &gate);
        for me in 1..threads {
            let started = spawn_scoped(s, move || {
                let mut spins = 0u32;
                loop {
                    match gate.load(Ordering::Acquire) {
                        GO => break,
                        STOP => return,
                        _ if spins < 1000 => {
                            spins += 1;
                            std::hint::spin_loop();
                        }
                        _ => std::thread::yield_now(),
                    }
                }
                work(me);
            });
            if let Err(e) = started {
                gate.store(STOP, Ordering::Release);
                return Err(e);
            }
        }
        gate.store(GO, Ordering::Release);
        work(0);
        Ok(())
    })
}

/// Runs `attempt(threads)`, which builds the work for that many threads and
/// runs it with [`run_team`]; if a thread could not be started (so nothing
/// was done), runs `attempt(1)`, which starts none: the same work on the
/// calling thread alone.
pub(crate) fn team_or_alone<T>(
    threads: usize,
    mut attempt: impl FnMut(usize) -> std::io::Result<T>,
) -> T {
    attempt(threads).unwrap_or_else(|_| attempt(1).expect("one thread starts no other"))
}

/// Starts a scoped thread, or says why it could not.
pub(crate) fn spawn_scoped<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    f: impl FnOnce() + Send + 'scope,
) -> std::io::Result<()> {
    #[cfg(test)]
    if FAIL_SPAWNS.with(|fail| fail.get().is_some_and(|left| left == 0)) {
        SPAWNS_REFUSED.with(|refused| refused.set(refused.get() + 1));
        return Err(std::io::Error::other("thread start refused by the test"));
    }
    #[cfg(test)]
    FAIL_SPAWNS.with(|fail| fail.set(fail.get().map(|left| left - 1)));
    std::thread::Builder::new().spawn_scoped(s, f).map(|_| ())
}

/// Runs `work` on every part, part 0 on the calling thread and the others on
/// scoped threads; returns when all are done (re-raising any panic). A part
/// whose thread cannot be started is worked on by the calling thread.
pub(crate) fn run_parts<P: Send>(parts: &mut [P], work: impl Fn(&mut P) + Sync) {
    match parts {
        [] => {}
        [only] => work(only),
        [first, rest @ ..] => {
            // Each part behind a lock, so that one whose thread was not
            // started is still at hand.
            let rest: Vec<std::sync::Mutex<&mut P>> =
                rest.iter_mut().map(std::sync::Mutex::new).collect();
            std::thread::scope(|s| {
                let mut unstarted = Vec::new();
                for (i, part) in rest.iter().enumerate() {
                    let work = &work;
                    let started = spawn_scoped(s, move || {
                        work(&mut part.lock().expect("locked by this thread only"))
                    });
                    if started.is_err() {
                        unstarted.push(i);
                    }
                }
                work(first);
                for i in unstarted {
                    work(&mut rest[i].lock().expect("its thread never started"));
                }
            })
        }
    }
}

#[cfg(test)]
thread_local! {
    /// For tests: how many more threads the calling thread may start before
    /// a start fails (None: no limit).
    static FAIL_SPAWNS: std::cell::Cell<Option<usize>> =
        const { std::cell::Cell::new(None) };
    /// For tests: how many thread starts were refused on the calling thread.
    static SPAWNS_REFUSED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// For tests: runs `f` with the calling thread allowed `starts` thread
/// starts; returns its result and how many starts were refused.
#[cfg(test)]
pub(crate) fn with_spawn_limit<R>(starts: usize, f: impl FnOnce() -> R) -> (R, usize) {
    FAIL_SPAWNS.with(|fail| fail.set(Some(starts)));
    SPAWNS_REFUSED.with(|refused| refused.set(0));
    let r = f();
    FAIL_SPAWNS.with(|fail| fail.set(None));
    (r, SPAWNS_REFUSED.with(|refused| refused.get()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_team_whose_thread_cannot_start_does_no_work_and_says_so() {
        let worked = AtomicUsize::new(0);
        // Threads 1 and 2 of 4 start, thread 3 does not: nobody works (the
        // started ones would wait for thread 3 at their first meeting).
        let (result, refused) = with_spawn_limit(2, || {
            run_team(4, |_| {
                worked.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert!(result.is_err());
        assert_eq!(refused, 1);
        assert_eq!(worked.load(Ordering::Relaxed), 0);
        // Without the limit every thread works once.
        run_team(4, |_| {
            worked.fetch_add(1, Ordering::Relaxed);
        })
        .expect("threads start");
        assert_eq!(worked.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn parts_whose_threads_cannot_start_are_worked_on_by_the_caller() {
        let mut parts = vec![0usize; 4];
        let ((), refused) = with_spawn_limit(1, || run_parts(&mut parts, |p| *p += 1));
        assert_eq!(refused, 2);
        assert_eq!(parts, [1, 1, 1, 1]);
    }
}
