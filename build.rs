//! Build script: the SONAME version of the C library, as the crate sees it.
//!
//! The header (include/wcpt.h) is not generated here: `make header` runs the
//! cbindgen command line, and `make check` fails if the committed header
//! differs from its output. So a Rust dependent needs no cbindgen, and no
//! build writes into the source folder. The C libraries are built by the
//! Makefile: rustc makes the archive, and the shared library is linked from
//! it with the SONAME and a version script (symbol versions WCPT_<SOVER>).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // libwcpt.so.MAJOR, but libwcpt.so.0.MINOR while the major version is 0,
    // when every minor version may change the ABI (as cargo-c does). The
    // Makefile's SOVER is the same rule; `ffi`'s tests check they agree.
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap();
    let sover = if major == "0" { format!("0.{minor}") } else { major };
    println!("cargo:rustc-env=WCPT_SOVER={sover}");
}
