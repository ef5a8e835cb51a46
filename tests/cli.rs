//! The `simple-ml` program that `cargo run --release` runs: its tables on the
//! real MNIST files in `data/`, its exit codes and messages for bad
//! arguments and missing files, and `--help`.

use std::path::Path;
use std::process::{Command, Output};

#[path = "common/mnist.rs"]
mod mnist;

use mnist::{test_set, train, SOFTMAX_TABLE};
use simple_ml::{train_nn, Data, EpochReport, NnConfig, Sgd};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data");

fn simple_ml(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simple-ml"))
        .args(args)
        .output()
        .expect("the simple-ml binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("UTF-8 output")
}

/// The lines of `text` from the table header after `title` up to the first
/// line that is not a table row.
fn table_after(text: &str, title: &str) -> Vec<String> {
    let start = text
        .find(title)
        .unwrap_or_else(|| panic!("{title:?} in {text}"));
    let mut lines = text[start..].lines().skip(1);
    assert_eq!(lines.next(), Some(EpochReport::TABLE_HEADER), "{text}");
    lines
        .take_while(|l| l.starts_with("|  "))
        .map(str::to_string)
        .collect()
}

#[test]
fn softmax_table_is_the_course_table() {
    let out = simple_ml(&["--model", "softmax", "--data", DATA]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.starts_with("Loaded 60000 training and 10000 test images from "),
        "{text}"
    );
    let rows = table_after(
        &text,
        "Training softmax regression (epochs 10, lr 0.2, batch 100)",
    );
    // The course's table: rows 0 and 9 as published, all ten as the numpy
    // reference prints them.
    assert_eq!(rows, SOFTMAX_TABLE, "{text}");
    assert!(!text.contains("two layer"), "--model softmax only: {text}");
    assert!(text.contains("\ntotal: "), "{text}");
}

#[test]
fn network_table_is_what_the_library_computes() {
    let args = [
        "--model", "nn", "--hidden", "20", "--epochs", "2", "--lr", "0.1", "--batch", "50",
        "--seed", "3", "--data", DATA,
    ];
    let out = simple_ml(&args);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let rows = table_after(
        &text,
        "Training two layer neural network w/ 20 hidden units (epochs 2, lr 0.1, batch 50, seed 3)",
    );
    assert!(
        !text.contains("softmax regression"),
        "--model nn only: {text}"
    );

    let (x_tr, y_tr) = train();
    let (x_te, y_te) = test_set();
    let config = NnConfig {
        hidden: 20,
        epochs: 2,
        sgd: Sgd { lr: 0.1, batch: 50 },
        seed: 3,
    };
    let mut want = Vec::new();
    train_nn(
        Data {
            x: x_tr.view(),
            y: y_tr.view(),
        },
        Data {
            x: x_te.view(),
            y: y_te.view(),
        },
        &config,
        |r: &EpochReport| want.push(r.table_row()),
    )
    .unwrap();
    assert_eq!(rows, want);
}

#[test]
fn help_prints_the_usage() {
    for flag in ["--help", "-h"] {
        let out = simple_ml(&[flag]);
        assert!(out.status.success());
        assert!(
            stdout(&out).starts_with("Usage: simple-ml [OPTIONS]"),
            "{}",
            stdout(&out)
        );
    }
}

#[test]
fn bad_arguments_exit_2_with_the_reason_and_the_usage() {
    let cases: [(&[&str], &str); 9] = [
        (
            &["--model", "cnn"],
            "simple-ml: --model must be softmax, nn or both, not \"cnn\"",
        ),
        (
            &["--epochs", "ten"],
            "simple-ml: invalid value for --epochs: \"ten\"",
        ),
        (
            &["--lr=fast"],
            "simple-ml: invalid value for --lr: \"fast\"",
        ),
        (&["--hidden"], "simple-ml: --hidden needs a value"),
        (&["--verbose"], "simple-ml: unknown argument \"--verbose\""),
        // Values the library would refuse, refused before any data is read
        // (stdout stays empty: no "Loaded ..." line, no softmax table).
        (&["--batch", "0"], "simple-ml: --batch must be positive"),
        (&["--lr", "nan"], "simple-ml: --lr must be finite, not NaN"),
        (&["--lr=inf"], "simple-ml: --lr must be finite, not inf"),
        (&["--hidden", "0"], "simple-ml: --hidden must be positive"),
    ];
    for (args, reason) in cases {
        let out = simple_ml(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with(&format!("{reason}\n")), "{args:?}: {err}");
        assert!(
            err.contains("Usage: simple-ml [OPTIONS]"),
            "{args:?}: {err}"
        );
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
}

#[test]
fn a_missing_data_folder_exits_1_naming_the_file() {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-no-data");
    let _ = std::fs::remove_dir_all(&scratch);
    let out = simple_ml(&["--data", scratch.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("simple-ml: error: "), "{err}");
    let file = scratch.join("train-images-idx3-ubyte.gz");
    assert!(err.contains(file.to_str().unwrap()), "{err}");
}

/// Output that cannot be written ends the run with a status, not a panic:
/// a reader that went away (`simple-ml | head -1`) quietly, a full disk
/// with the reason.
#[test]
fn unwritable_output_is_no_panic() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_simple-ml"))
        .args(["--model", "softmax", "--epochs", "3", "--data", DATA])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the simple-ml binary runs");
    let mut first = [0u8; 6];
    child
        .stdout
        .take()
        .expect("piped")
        .read_exact(&mut first)
        .expect("the first line starts");
    // The pipe's reading end is closed here, as `head` closes it.
    let out = child.wait_with_output().expect("it ends");
    assert_eq!(&first, b"Loaded");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let full = std::fs::File::create("/dev/full").expect("/dev/full on Linux");
    let out = Command::new(env!("CARGO_BIN_EXE_simple-ml"))
        .args(["--model", "softmax", "--epochs", "1", "--data", DATA])
        .stdout(full)
        .output()
        .expect("the simple-ml binary runs");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("simple-ml: error: writing the output: "),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
