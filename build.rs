//! Passes the target and host triples to tests/c_api.rs, which builds the C
//! tests with the `cc` crate for the same target as the library.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in ["TARGET", "HOST"] {
        let value = std::env::var(var).unwrap_or_else(|_| panic!("cargo sets {var}"));
        println!("cargo:rustc-env=SML_BUILD_{var}={value}");
    }
}
