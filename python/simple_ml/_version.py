# The package's version; always the Rust crate's (Cargo.toml), which the tests check.
__version__ = "0.1.0"
