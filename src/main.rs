//! `simple-ml`: trains softmax regression and the two-layer network on the
//! MNIST files in `data/` and prints the course's tables.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use simple_ml::{
    parse_mnist, train_nn, train_softmax, Data, EpochReport, MnistPaths, NnConfig, Sgd,
    SoftmaxConfig,
};

const USAGE: &str = "\
Usage: simple-ml [OPTIONS]

Trains on MNIST and prints the CMU 10-414/714 hw0 tables.

Options:
  --model softmax|nn|both  which model to train            [default: both]
  --epochs N               epochs (softmax 10, nn 20 unless given)
  --lr LR                  learning rate                    [default: 0.2]
  --batch N                minibatch size                   [default: 100]
  --hidden N               hidden units of the network      [default: 400]
  --seed N                 numpy seed of the initial network weights [default: 0]
  --data DIR               folder with the four MNIST .gz files [default: data]
  -h, --help               print this help";

#[derive(Debug)]
struct Options {
    softmax: bool,
    nn: bool,
    epochs: Option<usize>,
    lr: f32,
    batch: usize,
    hidden: usize,
    seed: u32,
    data: PathBuf,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options {
        softmax: true,
        nn: true,
        epochs: None,
        lr: 0.2,
        batch: 100,
        hidden: 400,
        seed: 0,
        data: PathBuf::from("data"),
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("invalid value for {flag}: {v:?}"))
        }
        match flag.as_str() {
            "--model" => match value()?.as_str() {
                "softmax" => (o.softmax, o.nn) = (true, false),
                "nn" => (o.softmax, o.nn) = (false, true),
                "both" => (o.softmax, o.nn) = (true, true),
                other => {
                    return Err(format!(
                        "--model must be softmax, nn or both, not {other:?}"
                    ))
                }
            },
            "--epochs" => o.epochs = Some(num(&flag, value()?)?),
            "--lr" => o.lr = num(&flag, value()?)?,
            "--batch" => o.batch = num(&flag, value()?)?,
            "--hidden" => o.hidden = num(&flag, value()?)?,
            "--seed" => o.seed = num(&flag, value()?)?,
            "--data" => o.data = PathBuf::from(value()?),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    // Refused here, before the data is read, rather than by the library
    // after it (for --hidden, after a whole softmax run).
    if o.batch == 0 {
        return Err("--batch must be positive".into());
    }
    if !o.lr.is_finite() {
        return Err(format!("--lr must be finite, not {}", o.lr));
    }
    if o.nn && o.hidden == 0 {
        return Err("--hidden must be positive".into());
    }
    Ok(Some(o))
}

/// Why a run stopped: the library refused, or the output could not be
/// written (a closed pipe, a full disk), which `println!` would have
/// turned into a panic.
enum Failure {
    Library(simple_ml::Error),
    Output(std::io::Error),
}

impl From<simple_ml::Error> for Failure {
    fn from(e: simple_ml::Error) -> Self {
        Failure::Library(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Output(e)
    }
}

/// Standard output, line by line, keeping the first write error.
struct Out {
    stdout: std::io::Stdout,
    error: Option<std::io::Error>,
}

impl Out {
    fn line(&mut self, text: std::fmt::Arguments<'_>) -> std::io::Result<()> {
        let mut stdout = self.stdout.lock();
        stdout.write_fmt(text)?;
        stdout.write_all(b"\n")?;
        stdout.flush()
    }

    /// The epoch callback: prints the row, or stops the run if it cannot.
    fn row(&mut self, report: &EpochReport) -> ControlFlow<()> {
        match self.line(format_args!("{}", report.table_row())) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.error.get_or_insert(e);
                ControlFlow::Break(())
            }
        }
    }

    fn check(&mut self) -> std::io::Result<()> {
        self.error.take().map_or(Ok(()), Err)
    }
}

fn run(o: &Options, out: &mut Out) -> Result<(), Failure> {
    let started = Instant::now();
    let paths = MnistPaths::in_dir(&o.data);
    let (x_tr, y_tr) = parse_mnist(&paths.train_images, &paths.train_labels)?;
    let (x_te, y_te) = parse_mnist(&paths.test_images, &paths.test_labels)?;
    out.line(format_args!(
        "Loaded {} training and {} test images from {} in {:.3} s",
        x_tr.nrows(),
        x_te.nrows(),
        o.data.display(),
        started.elapsed().as_secs_f64()
    ))?;
    let train = Data {
        x: x_tr.view(),
        y: y_tr.view(),
    };
    let test = Data {
        x: x_te.view(),
        y: y_te.view(),
    };
    let sgd = Sgd {
        lr: o.lr,
        batch: o.batch,
    };
    if o.softmax {
        let config = SoftmaxConfig {
            epochs: o.epochs.unwrap_or(10),
            sgd,
        };
        out.line(format_args!(
            "\nTraining softmax regression (epochs {}, lr {}, batch {})",
            config.epochs, sgd.lr, sgd.batch
        ))?;
        out.line(format_args!("{}", EpochReport::TABLE_HEADER))?;
        let t = Instant::now();
        train_softmax(train, test, &config, |r| out.row(r))?;
        out.check()?;
        out.line(format_args!(
            "softmax regression: {:.3} s",
            t.elapsed().as_secs_f64()
        ))?;
    }
    if o.nn {
        let config = NnConfig {
            hidden: o.hidden,
            epochs: o.epochs.unwrap_or(20),
            sgd,
            seed: o.seed,
        };
        out.line(format_args!(
            "\nTraining two layer neural network w/ {} hidden units (epochs {}, lr {}, batch {}, seed {})",
            config.hidden, config.epochs, sgd.lr, sgd.batch, config.seed
        ))?;
        out.line(format_args!("{}", EpochReport::TABLE_HEADER))?;
        let t = Instant::now();
        train_nn(train, test, &config, |r| out.row(r))?;
        out.check()?;
        out.line(format_args!(
            "two-layer network: {:.3} s",
            t.elapsed().as_secs_f64()
        ))?;
    }
    out.line(format_args!(
        "\ntotal: {:.3} s",
        started.elapsed().as_secs_f64()
    ))?;
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            // A closed or full stdout is no reason to panic here either.
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("simple-ml: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut out = Out {
        stdout: std::io::stdout(),
        error: None,
    };
    match run(&options, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Library(e)) => {
            eprintln!("simple-ml: error: {e}");
            ExitCode::FAILURE
        }
        // The reader went away (`simple-ml | head`): stop quietly, as
        // a program that SIGPIPE ends would.
        Err(Failure::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Output(e)) => {
            eprintln!("simple-ml: error: writing the output: {e}");
            ExitCode::FAILURE
        }
    }
}
