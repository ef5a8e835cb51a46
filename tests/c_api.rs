//! The C tests: the programs in `c_tests/`, compiled with the `cc` crate's C
//! compiler against `include/simple_ml.h` (`-std=c11 -Wall -Wextra
//! -Werror`), linked once against the cdylib and once against the staticlib
//! that this `cargo test` built, and run. The same programs also run under
//! AddressSanitizer + UBSan (static) and under valgrind memcheck (shared).
//! Plus: the shared library exports exactly the header's functions, the
//! header compiles alone and from C++, and `make install` + pkg-config
//! build and run `examples/example.c`.
//!
//! Each C program is run as `PROGRAM DATA_DIR SCRATCH_DIR [--quick]`;
//! `--quick` (valgrind only, where the full training set would take minutes)
//! runs the same code paths on subsets of MNIST.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The C test programs, `c_tests/<name>.c`.
const PROGRAMS: [&str; 5] = ["api", "bad_input", "published", "teardown", "threads"];

const C_FLAGS: [&str; 4] = ["-std=c11", "-Wall", "-Wextra", "-Werror"];
/// What a static link of the library needs besides libc (see the README).
const STATIC_SYSTEM_LIBS: [&str; 3] = ["-lpthread", "-ldl", "-lm"];
const SANITIZER_FLAGS: [&str; 3] = [
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-fno-sanitize-recover=all",
];

/// The course's table for `train_softmax(epochs=10, lr=0.2, batch=100)`:
/// rows 0 and 9 are published, row 1 is checked by `c_tests/published.c`.
const SOFTMAX_ROWS: [(usize, &str); 3] = [
    (
        0,
        "|     0 |    0.35134 |   0.10182 |   0.33588 |  0.09400 |",
    ),
    (
        1,
        "|     1 |    0.32142 |   0.09268 |   0.31086 |  0.08730 |",
    ),
    (
        9,
        "|     9 |    0.27887 |   0.07847 |   0.28442 |  0.07970 |",
    ),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn data_dir() -> PathBuf {
    root().join("data")
}

/// The libraries this `cargo test` built. Cargo compiles the library's
/// cdylib and staticlib with the rlib the tests link, into
/// `target/<profile>/deps/` next to this test binary; it copies them up to
/// `target/<profile>/` only for `cargo build`, so those copies may be stale.
struct Libs {
    dir: PathBuf,
    shared: PathBuf,
    archive: PathBuf,
}

fn libs() -> &'static Libs {
    static LIBS: OnceLock<Libs> = OnceLock::new();
    LIBS.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let dir = exe
            .parent()
            .expect("the test binary is in deps/")
            .to_path_buf();
        let shared = dir.join("libsimple_ml.so");
        let archive = dir.join("libsimple_ml.a");
        for lib in [&shared, &archive] {
            assert!(
                lib.is_file(),
                "{} is missing: cargo no longer builds the cdylib/staticlib next to the tests",
                lib.display()
            );
        }
        // The rlib this binary was linked from comes out of the same rustc
        // run as the two C libraries; a large gap in their times would mean
        // the C libraries are left over from an older build.
        let rlib = newest(&dir, "libsimple_ml", ".rlib").expect("libsimple_ml*.rlib in deps/");
        for lib in [&shared, &archive] {
            let gap = modified(lib).abs_diff(modified(&rlib));
            assert!(
                gap < 300,
                "{} and {} were built {gap} s apart: the C library is stale",
                lib.display(),
                rlib.display()
            );
        }
        Libs {
            dir,
            shared,
            archive,
        }
    })
}

fn modified(path: &Path) -> u64 {
    let time = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    time.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn newest(dir: &Path, prefix: &str, suffix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .max_by_key(|p| modified(p))
}

/// A fresh directory for one test's outputs, private to this process.
fn work_dir(name: &str) -> PathBuf {
    let dir = libs()
        .dir
        .join("..")
        .join("c_api")
        .join(std::process::id().to_string())
        .join(name);
    clean_up(&dir);
    std::fs::create_dir_all(&dir).expect("create the work directory");
    dir
}

/// Removes a test's work directory. The (empty) per-process directory above
/// it stays: removing it raced with another test creating its own inside,
/// which then failed with NotFound.
fn clean_up(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// The C (or C++) compiler the `cc` crate picks for this target, with its
/// base flags, at -O2 with debug information.
fn compiler(cpp: bool) -> Command {
    cc::Build::new()
        .cpp(cpp)
        .target(env!("SML_BUILD_TARGET"))
        .host(env!("SML_BUILD_HOST"))
        .opt_level(2)
        .debug(true)
        .cargo_metadata(false)
        .cargo_warnings(false)
        .emit_rerun_if_env_changed(false)
        .get_compiler()
        .to_command()
}

/// Runs a command to completion, failing the test with its output unless
/// it exits with status 0.
fn run(mut cmd: Command, what: &str) -> Output {
    // cargo puts target/<profile> on LD_LIBRARY_PATH, which outranks the
    // programs' rpath: a stale libsimple_ml.so copied there would be loaded
    // instead of the fresh one in deps/.
    cmd.env_remove("LD_LIBRARY_PATH");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {cmd:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[derive(Clone, Copy)]
enum Link {
    /// `-lsimple_ml` against the cdylib, found at run time through the rpath.
    Shared,
    /// `libsimple_ml.a` plus the system libraries it needs.
    Static,
    /// The staticlib, with the C code built under ASan + UBSan.
    Sanitized,
}

/// Compiles and links `c_tests/<name>.c`.
fn build(name: &str, link: Link, dir: &Path) -> PathBuf {
    let exe = dir.join(name);
    let mut cmd = compiler(false);
    cmd.args(C_FLAGS)
        .arg("-pthread")
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("c_tests").join(format!("{name}.c")))
        .arg("-o")
        .arg(&exe);
    let libs = libs();
    match link {
        Link::Shared => {
            cmd.arg(format!("-L{}", libs.dir.display()))
                .arg("-lsimple_ml")
                .arg(format!("-Wl,-rpath,{}", libs.dir.display()));
        }
        Link::Static => {
            cmd.arg(&libs.archive).args(STATIC_SYSTEM_LIBS);
        }
        Link::Sanitized => {
            cmd.args(SANITIZER_FLAGS)
                .arg(&libs.archive)
                .args(STATIC_SYSTEM_LIBS);
        }
    }
    cmd.arg("-lm");
    run(cmd, &format!("compiling c_tests/{name}.c"));
    exe
}

/// The command that runs a C test program on MNIST with a fresh scratch dir.
fn test_command(exe: &Path, dir: &Path, quick: bool) -> Command {
    let scratch = dir.join(format!(
        "{}-scratch",
        exe.file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("create the scratch directory");
    let mut cmd = Command::new(exe);
    cmd.arg(data_dir()).arg(&scratch);
    if quick {
        cmd.arg("--quick");
    }
    // The deliberate panics would print backtraces (slow under valgrind).
    cmd.env("RUST_BACKTRACE", "0");
    cmd
}

/// Checks a passing run printed its summary line: a program that exits 0
/// without running its checks must not count as a pass.
fn assert_passed(name: &str, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{name}: all checks passed")),
        "{name} exited 0 without its summary line:\n{stdout}"
    );
}

fn build_and_run_all(link: Link, tag: &str) {
    let dir = work_dir(tag);
    for name in PROGRAMS {
        let exe = build(name, link, &dir);
        let mut cmd = test_command(&exe, &dir, false);
        if let Link::Sanitized = link {
            cmd.env(
                "ASAN_OPTIONS",
                "detect_leaks=1:halt_on_error=1:abort_on_error=0",
            )
            .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1");
        }
        let out = run(cmd, &format!("{tag} c_tests/{name}"));
        assert_passed(name, &out);
        if let Link::Sanitized = link {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !stderr.contains("runtime error:") && !stderr.contains("Sanitizer"),
                "{name}: sanitizer report:\n{stderr}"
            );
        }
    }
    clean_up(&dir);
}

#[test]
fn c_tests_against_the_shared_library() {
    build_and_run_all(Link::Shared, "shared");
}

#[test]
fn c_tests_against_the_static_library() {
    build_and_run_all(Link::Static, "static");
}

#[test]
fn c_tests_under_address_and_undefined_behaviour_sanitizers() {
    build_and_run_all(Link::Sanitized, "sanitized");
}

#[test]
fn c_tests_under_valgrind() {
    let found = Command::new("valgrind").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "valgrind is not installed: run scripts/install-deps (apt-get install valgrind)"
    );
    let dir = work_dir("valgrind");
    for name in PROGRAMS {
        let exe = build(name, Link::Shared, &dir);
        let test = test_command(&exe, &dir, true);
        let mut cmd = Command::new("valgrind");
        cmd.args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--quiet",
        ])
        .arg(test.get_program())
        .args(test.get_args());
        for (key, value) in test.get_envs() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        let out = run(cmd, &format!("valgrind c_tests/{name} --quick"));
        assert_passed(name, &out);
    }
    clean_up(&dir);
}

/// Function names declared in the header.
fn header_functions() -> Vec<String> {
    let header = std::fs::read_to_string(root().join("include/simple_ml.h")).expect("header");
    let mut names = Vec::new();
    for line in header.lines() {
        // A declaration starts at column 0 with a type and has `name(`.
        if line.starts_with("//") || line.starts_with('#') || line.starts_with(' ') {
            continue;
        }
        if let Some(open) = line.find('(') {
            let before = &line[..open];
            let name = before
                .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("");
            if !name.is_empty() && !before.starts_with("typedef") {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    names
}

#[test]
fn shared_library_exports_exactly_the_c_api() {
    let out = run(
        {
            let mut cmd = Command::new("nm");
            cmd.args(["-D", "--defined-only"]).arg(&libs().shared);
            cmd
        },
        "nm -D",
    );
    let mut functions = Vec::new();
    let mut others = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (kind, name) = match fields[..] {
            [_, kind, name] | [kind, name] => (kind, name),
            _ => panic!("unexpected nm line {line:?}"),
        };
        match kind {
            "T" | "W" | "i" => functions.push(name.to_string()),
            _ => others.push(format!("{kind} {name}")),
        }
    }
    functions.sort();
    let course = [
        "nn_epoch_cpp",
        "softmax_loss_cpp",
        "softmax_regression_epoch_cpp",
    ];
    let strays: Vec<&String> = functions
        .iter()
        .filter(|f| !f.starts_with("sml_") && !course.contains(&f.as_str()))
        .collect();
    assert!(
        strays.is_empty(),
        "unexpected exported functions: {strays:?}"
    );
    assert_eq!(
        functions,
        header_functions(),
        "the exported functions differ from the header's declarations"
    );
    // Rust emits no exported data symbols today; if that changes, look at
    // what they are before allowing them here.
    assert!(others.is_empty(), "unexpected exported symbols: {others:?}");
}

#[test]
fn header_compiles_alone_as_c11() {
    let dir = work_dir("header_c");
    let exe = dir.join("header_only");
    let mut cmd = compiler(false);
    cmd.args(C_FLAGS)
        .arg("-pedantic")
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("c_tests/header_only.c"))
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", libs().dir.display()))
        .arg("-lsimple_ml")
        .arg(format!("-Wl,-rpath,{}", libs().dir.display()));
    run(cmd, "compiling c_tests/header_only.c");
    run(Command::new(&exe), "running header_only");
    clean_up(&dir);
}

#[test]
fn header_included_twice_from_cpp() {
    let dir = work_dir("header_cpp");
    let exe = dir.join("header_twice");
    let mut cmd = compiler(true);
    cmd.args(["-std=c++11", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("c_tests/header_twice.cpp"))
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", libs().dir.display()))
        .arg("-lsimple_ml")
        .arg(format!("-Wl,-rpath,{}", libs().dir.display()));
    run(cmd, "compiling c_tests/header_twice.cpp");
    let out = run(Command::new(&exe), "running header_twice");
    assert_passed("header_twice", &out);
    clean_up(&dir);
}

/// The bad-input table in docs/C_API.md is the one `bad_input` checks.
#[test]
fn docs_carry_the_bad_input_table() {
    let dir = work_dir("table");
    let exe = build("bad_input", Link::Shared, &dir);
    let out = run(
        {
            let mut cmd = Command::new(&exe);
            cmd.arg("--print-table");
            cmd
        },
        "bad_input --print-table",
    );
    let table = String::from_utf8(out.stdout).expect("UTF-8 table");
    let rows = table.lines().count();
    assert!(rows >= 32, "only {} cases in the table", rows - 2);
    let docs = std::fs::read_to_string(root().join("docs/C_API.md")).expect("docs/C_API.md");
    let begin = "<!-- bad-input-table:begin -->\n";
    let end = "<!-- bad-input-table:end -->";
    let start = docs.find(begin).expect("begin marker in docs/C_API.md") + begin.len();
    let stop = docs.find(end).expect("end marker in docs/C_API.md");
    assert!(
        docs[start..stop] == table,
        "docs/C_API.md's bad-input table differs from `bad_input --print-table`; replace \
         the lines between the markers with its output:\n{table}"
    );
    clean_up(&dir);
}

fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("pkg-config");
    cmd.args(args)
        .arg("simple_ml")
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .env_remove("PKG_CONFIG_LIBDIR")
        .env_remove("PKG_CONFIG_SYSROOT_DIR");
    let out = run(cmd, &format!("pkg-config {args:?}"));
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn check_example_output(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(concat!("simple_ml ", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    let table = &lines[2..];
    assert_eq!(table.len(), 10, "ten epochs expected:\n{stdout}");
    for (epoch, row) in SOFTMAX_ROWS {
        assert_eq!(table[epoch], row, "epoch {epoch}:\n{stdout}");
    }
}

/// `make install` into a temporary prefix (from the libraries this test run
/// built), then examples/example.c built with pkg-config, shared and static.
#[test]
fn make_install_and_pkg_config_build_the_example() {
    let dir = work_dir("install");
    let prefix = dir.join("prefix");
    let mut make = Command::new("make");
    make.arg("-C")
        .arg(root())
        .arg("--no-print-directory")
        .arg("install")
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("BUILD_DIR={}", libs().dir.display()));
    run(make, "make install");
    for installed in [
        "lib/libsimple_ml.so",
        "lib/libsimple_ml.a",
        "include/simple_ml.h",
        "lib/pkgconfig/simple_ml.pc",
    ] {
        assert!(
            prefix.join(installed).is_file(),
            "{installed} not installed"
        );
    }
    let pc = std::fs::read_to_string(prefix.join("lib/pkgconfig/simple_ml.pc")).unwrap();
    assert!(pc.contains("Libs.private: -lpthread -ldl -lm"), "{pc}");
    assert!(
        pc.contains(concat!("Version: ", env!("CARGO_PKG_VERSION"))),
        "{pc}"
    );

    let example = root().join("examples/example.c");
    // Shared: exactly `cc example.c $(pkg-config --cflags --libs simple_ml)`.
    let shared = dir.join("example_shared");
    let mut cmd = compiler(false);
    cmd.args(C_FLAGS)
        .arg(&example)
        .args(pkg_config(&prefix, &["--cflags", "--libs"]))
        .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()))
        .arg("-o")
        .arg(&shared);
    run(
        cmd,
        "compiling examples/example.c against the installed shared library",
    );
    let mut cmd = Command::new(&shared);
    cmd.arg(data_dir());
    check_example_output(&run(cmd, "example (shared)"));

    // Static: `pkg-config --static --libs` with the archive picked by name;
    // no rpath, so the program only runs if it really holds the library.
    let static_exe = dir.join("example_static");
    let libs_static: Vec<String> = pkg_config(&prefix, &["--static", "--libs"])
        .into_iter()
        .map(|f| {
            if f == "-lsimple_ml" {
                "-l:libsimple_ml.a".to_string()
            } else {
                f
            }
        })
        .collect();
    assert!(
        libs_static.iter().any(|f| f == "-l:libsimple_ml.a"),
        "{libs_static:?}"
    );
    let mut cmd = compiler(false);
    cmd.args(C_FLAGS)
        .arg(&example)
        .args(pkg_config(&prefix, &["--cflags"]))
        .args(libs_static)
        .arg("-o")
        .arg(&static_exe);
    run(
        cmd,
        "compiling examples/example.c against the installed static library",
    );
    let mut cmd = Command::new(&static_exe);
    cmd.arg(data_dir()).env_remove("LD_LIBRARY_PATH");
    check_example_output(&run(cmd, "example (static)"));
    clean_up(&dir);
}

/// The README's C example compiles as written (C11, warnings as errors) and
/// runs from the repository root.
#[test]
fn readme_c_example_compiles_and_runs() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let section = readme
        .find("## Using it from C")
        .expect("README has a \"Using it from C\" section");
    let rest = &readme[section..];
    let start = rest.find("```c\n").expect("a ```c block in that section") + "```c\n".len();
    let code = &rest[start..start + rest[start..].find("```").expect("the block ends")];
    let dir = work_dir("readme");
    let source = dir.join("example.c");
    std::fs::write(&source, code).expect("write the README's example");
    let exe = dir.join("example");
    let mut cmd = compiler(false);
    cmd.args(C_FLAGS)
        .arg(&source)
        .arg("-I")
        .arg(root().join("include"))
        .arg(format!("-L{}", libs().dir.display()))
        .arg("-lsimple_ml")
        .arg(format!("-Wl,-rpath,{}", libs().dir.display()))
        .arg("-o")
        .arg(&exe);
    run(cmd, "compiling the README's C example");
    let mut cmd = Command::new(&exe);
    cmd.current_dir(root());
    run(cmd, "running the README's C example");
    clean_up(&dir);
}
