//! `cargo bench --bench epochs`: median times of the library's epochs on the
//! real MNIST training set (60000 × 784, batch 100, lr 0.1), evaluation and
//! MNIST parsing. Set SML_NUM_THREADS to choose the thread count; pass a
//! filter word (softmax, nn100, nn400, eval, parse, cached, floor, peak) to
//! run only some; `cached` times softmax epochs on X held in cache, `floor`
//! how long reading X once takes, `peak` how many multiply-adds a core can
//! do.
//! For the side-by-side comparison with numpy see bench/compare.py.

use std::time::Instant;

use simple_ml::{
    course_init_weights, nn_epoch, nn_loss_err, num_threads, parse_mnist, simd_level,
    softmax_regression_epoch, softmax_regression_loss_err, MnistPaths, Sgd,
};

/// CPU time of the whole process (all threads), in ms.
fn cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

/// (median wall ms, best wall ms, median CPU ms) over `runs` runs.
fn median_ms(runs: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    let mut times: Vec<(f64, f64)> = (0..runs)
        .map(|_| {
            let (t, c) = (Instant::now(), cpu_ms());
            f();
            (t.elapsed().as_secs_f64() * 1e3, cpu_ms() - c)
        })
        .collect();
    let mut cpu: Vec<f64> = times.iter().map(|t| t.1).collect();
    cpu.sort_by(|a, b| a.partial_cmp(b).unwrap());
    times.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    (times[runs / 2].0, times[0].0, cpu[runs / 2])
}

/// The bitwise OR of every float's bits, 16 at a time so that it vectorises;
/// with `PREFETCH`, each line's read is also asked for (a prefetch into L2)
/// 16 KiB ahead, as the softmax epoch asks for the next minibatch's lines.
fn or_bits<const PREFETCH: bool>(part: &[f32]) -> u32 {
    const AHEAD: usize = 4096; // floats
    let mut acc = [0u32; 16];
    let mut chunks = part.chunks_exact(16);
    for (i, c) in (&mut chunks).enumerate() {
        #[cfg(target_arch = "x86_64")]
        if PREFETCH {
            if let Some(line) = part.get(i * 16 + AHEAD..) {
                // SAFETY: a prefetch only hints; the address is inside `part`.
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                        line.as_ptr().cast(),
                    )
                };
            }
        }
        for (a, v) in acc.iter_mut().zip(c) {
            *a |= v.to_bits();
        }
    }
    let tail = chunks.remainder().iter().fold(0, |a, v| a | v.to_bits());
    acc.iter().fold(tail, |a, v| a | v)
}

/// `iters` rounds of 16 independent 16-float multiply-adds held in
/// registers: a core's multiply-add peak, which no kernel can pass.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_peak(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let (m, c) = (_mm512_set1_ps(0.9999), _mm512_set1_ps(1e-4));
    let mut acc = [_mm512_setzero_ps(); 16];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, m, c);
        }
    }
    _mm512_reduce_add_ps(
        acc.iter()
            .fold(_mm512_setzero_ps(), |s, a| _mm512_add_ps(s, *a)),
    )
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let paths = MnistPaths::in_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data"));
    let (x, y) = parse_mnist(&paths.train_images, &paths.train_labels).expect("MNIST in data/");
    println!("threads {}, simd {:?}", num_threads(), simd_level());
    let sgd = Sgd {
        lr: 0.1,
        batch: 100,
    };
    let report = |name: &str, (median, best, cpu): (f64, f64, f64)| {
        println!("{name:<28} median {median:8.2} ms   best {best:8.2} ms   cpu {cpu:8.2} ms");
    };
    if wanted("parse") {
        report(
            "parse_mnist (train)",
            median_ms(5, || {
                parse_mnist(&paths.train_images, &paths.train_labels).unwrap();
            }),
        );
    }
    if wanted("softmax") {
        let mut theta = ndarray::Array2::<f32>::zeros((784, 10));
        report(
            "softmax epoch (k 10)",
            median_ms(9, || {
                softmax_regression_epoch(x.view(), y.view(), theta.view_mut(), sgd).unwrap()
            }),
        );
        if wanted("eval") {
            report(
                "softmax loss_err (60000)",
                median_ms(9, || {
                    softmax_regression_loss_err(x.view(), y.view(), theta.view()).unwrap();
                }),
            );
        }
    }
    #[cfg(target_arch = "x86_64")]
    if wanted("peak") && std::arch::is_x86_feature_detected!("avx512f") {
        // The kernels' multiply-adds are 16 floats wide (one AVX-512
        // instruction): how many of those a core does per second at most,
        // alone and with every thread the epochs use doing the same.
        const ITERS: usize = 20_000_000;
        for threads in [1, 2].into_iter().filter(|&t| t <= num_threads()) {
            let (_, best, _) = median_ms(5, || {
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        // SAFETY: AVX-512F was detected above.
                        s.spawn(|| std::hint::black_box(unsafe { fma_peak(ITERS) }));
                    }
                });
            });
            println!(
                "multiply-add peak, {threads} thr: {:.2} G 16-float multiply-adds/s per core (best of 5)",
                (ITERS * 16) as f64 / best / 1e6
            );
        }
    }
    if wanted("floor") {
        // What reading X once costs on this machine: each of `threads`
        // threads ORs the bits of a contiguous share of X, with plain loads
        // that the hardware prefetchers see as streams, and again with each
        // line also asked for 16 KiB ahead (software prefetches into L2,
        // which on this machine bring lines in faster than the hardware
        // prefetchers do). No epoch that reads X on as many threads can be
        // faster than the faster of the two; the softmax epoch uses at most
        // 2 threads.
        let xs = x.as_slice().expect("standard layout");
        type Read = fn(&[f32]) -> u32;
        let reads: [(&str, Read); 2] = [("", or_bits::<false>), (" + prefetch", or_bits::<true>)];
        for threads in [1, 2].into_iter().filter(|&t| t <= num_threads()) {
            for (how, read) in reads {
                report(
                    &format!("read X once{how}, {threads} thr"),
                    median_ms(9, || {
                        let per = xs.len().div_ceil(threads * 16) * 16;
                        let bits = std::thread::scope(|s| {
                            let parts: Vec<_> = xs
                                .chunks(per)
                                .map(|part| s.spawn(move || read(part)))
                                .collect();
                            parts.into_iter().fold(0, |a, p| a | p.join().unwrap())
                        });
                        std::hint::black_box(bits);
                    }),
                );
            }
        }
    }
    if wanted("cached") {
        // Softmax epochs on the first m rows, repeated up to 60000 rows: X
        // stays in L2 (m = 600, which also runs on one thread) or L3 (6000)
        // instead of coming from memory, so the difference from 60000 rows
        // is what reading X costs.
        for m in [600usize, 6000, 60000] {
            let mut theta = ndarray::Array2::<f32>::zeros((784, 10));
            let xs = x.slice(ndarray::s![..m, ..]);
            let ys = y.slice(ndarray::s![..m]);
            let reps = 60000 / m;
            report(
                &format!("softmax x{reps} on {m} rows"),
                median_ms(9, || {
                    for _ in 0..reps {
                        softmax_regression_epoch(xs, ys, theta.view_mut(), sgd).unwrap()
                    }
                }),
            );
        }
    }
    for hidden in [100, 400] {
        if !wanted(&format!("nn{hidden}")) {
            continue;
        }
        let (mut w1, mut w2) = course_init_weights(0, 784, hidden, 10);
        report(
            &format!("nn epoch (hidden {hidden})"),
            median_ms(5, || {
                nn_epoch(x.view(), y.view(), w1.view_mut(), w2.view_mut(), sgd).unwrap()
            }),
        );
        if wanted("eval") {
            report(
                &format!("nn loss_err (hidden {hidden})"),
                median_ms(5, || {
                    nn_loss_err(x.view(), y.view(), w1.view(), w2.view()).unwrap();
                }),
            );
        }
    }
}
