//! A training callback can end the run: returning `ControlFlow::Break(())`
//! after an epoch stops training there, with that epoch's weights.

use std::ops::ControlFlow;

mod common;

use common::sparse_problem;
use ndarray::Array2;
use simple_ml::{
    fit_nn, fit_softmax, train_nn, train_softmax, Data, EpochReport, NnConfig, Sgd, SoftmaxConfig,
};

/// Goes on until epoch `last` has been reported, recording every epoch seen.
fn stop_after(
    last: usize,
    seen: &mut Vec<usize>,
) -> impl FnMut(&EpochReport) -> ControlFlow<()> + '_ {
    move |r| {
        seen.push(r.epoch);
        if r.epoch == last {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

#[test]
fn softmax_training_stops_where_the_callback_says() {
    let (x, y) = sparse_problem(7, 300, 40, 4);
    let data = Data {
        x: x.view(),
        y: y.view(),
    };
    let sgd = Sgd { lr: 0.3, batch: 32 };
    let mut seen = Vec::new();
    let stopped = train_softmax(
        data,
        data,
        &SoftmaxConfig { epochs: 6, sgd },
        stop_after(1, &mut seen),
    )
    .unwrap();
    assert_eq!(seen, [0, 1]);
    let two = train_softmax(data, data, &SoftmaxConfig { epochs: 2, sgd }, |_| ()).unwrap();
    let six = train_softmax(data, data, &SoftmaxConfig { epochs: 6, sgd }, |_| ()).unwrap();
    assert_eq!(stopped, two);
    assert_ne!(stopped, six);

    let mut theta = Array2::<f32>::zeros((40, 4));
    let config = SoftmaxConfig { epochs: 6, sgd };
    seen.clear();
    let run = fit_softmax(
        data,
        data,
        theta.view_mut(),
        &config,
        stop_after(3, &mut seen),
    )
    .unwrap();
    assert_eq!((run, seen.len()), (4, 4));
    let run = fit_softmax(data, data, theta.view_mut(), &config, |_| ()).unwrap();
    assert_eq!(run, 6);
    let run = fit_softmax(data, data, theta.view_mut(), &config, |_| {
        ControlFlow::Continue(())
    });
    assert_eq!(run.unwrap(), 6);
}

#[test]
fn network_training_stops_where_the_callback_says() {
    let (x, y) = sparse_problem(7, 200, 30, 3);
    let data = Data {
        x: x.view(),
        y: y.view(),
    };
    let config = |epochs| NnConfig {
        hidden: 12,
        epochs,
        sgd: Sgd { lr: 0.2, batch: 25 },
        seed: 1,
    };
    let mut seen = Vec::new();
    let stopped = train_nn(data, data, &config(5), stop_after(0, &mut seen)).unwrap();
    assert_eq!(seen, [0]);
    let one = train_nn(data, data, &config(1), |_| ()).unwrap();
    let five = train_nn(data, data, &config(5), |_| ()).unwrap();
    assert_eq!(stopped, one);
    assert_ne!(stopped.0, five.0);

    let (mut w1, mut w2) = one;
    seen.clear();
    let run = fit_nn(
        data,
        data,
        w1.view_mut(),
        w2.view_mut(),
        &config(5),
        stop_after(2, &mut seen),
    )
    .unwrap();
    assert_eq!((run, seen), (3, vec![0, 1, 2]));
}
