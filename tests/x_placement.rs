//! The softmax epoch gives the same bits wherever X lies in memory:
//! `parse_mnist` puts X on a cache line, numpy's arrays start 16 bytes past
//! one, and a kernel that picked its path by X's address (to read whole
//! lines, say) must still sum every pixel in the same order.

mod common;

use common::sparse_problem;
use ndarray::{Array2, ArrayView2};
use simple_ml::{set_num_threads, softmax_regression_epoch, Sgd};

#[test]
fn every_placement_of_x_gives_the_same_bits() {
    // 784 = 49 chunks of 16 pixels (parts of 24 and 25 on two threads);
    // 64 and 32 give parts of two chunks and one; 1600 with k = 20 runs
    // three class groups; in rows of 792 (not a multiple of 16) the rows
    // start at different offsets from a line.
    for (m, n, k, batch) in [
        (700, 784, 10, 100),
        (300, 64, 3, 37),
        (257, 32, 13, 64),
        (130, 1600, 20, 50),
        (210, 792, 10, 100),
    ] {
        let (x, y) = sparse_problem(5, m, n, k);
        let x = x.as_slice().expect("standard layout");
        let mut buf = vec![0.0f32; m * n + 2 * 16];
        // Floats from buf's start to its first 64-byte line boundary.
        let to_line = (16 - buf.as_ptr() as usize / 4 % 16) % 16;
        for threads in [1, 2] {
            set_num_threads(threads);
            let mut reference: Option<Array2<f32>> = None;
            for past_line in 0..16 {
                let start = to_line + past_line;
                buf[start..start + m * n].copy_from_slice(x);
                let placed = ArrayView2::from_shape((m, n), &buf[start..start + m * n]).unwrap();
                assert_eq!(placed.as_ptr() as usize % 64, past_line * 4);
                let mut theta = Array2::<f32>::zeros((n, k));
                softmax_regression_epoch(
                    placed,
                    y.view(),
                    theta.view_mut(),
                    Sgd { lr: 0.5, batch },
                )
                .unwrap();
                assert!(theta.iter().any(|&t| t != 0.0));
                match &reference {
                    None => reference = Some(theta),
                    Some(r) => assert!(
                        r.iter()
                            .zip(&theta)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "n {n}, {threads} threads: X {past_line} floats past a line"
                    ),
                }
            }
        }
    }
    set_num_threads(0);
}
