//! Generates include/wcpt.h with cbindgen.
//!
//! The header is always written to `$OUT_DIR/wcpt.h`. If the committed
//! `include/wcpt.h` differs, it is rewritten (so a developer's build keeps it
//! current), unless `WCPT_HEADER=check`, in which case the build fails: that
//! is how `make check` proves the committed header is what cbindgen makes.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=include/wcpt.h");
    println!("cargo:rerun-if-env-changed=WCPT_HEADER");
    // SONAME: libwcpt.so.MAJOR, but libwcpt.so.0.MINOR while the major
    // version is 0, when every minor version may change the ABI (as cargo-c
    // does). The Makefile's SOVER says the same.
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap();
    let sover = if major == "0" { format!("0.{minor}") } else { major };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libwcpt.so.{sover}");
    soname_link(&sover);
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("wcpt.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut bytes = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/ffi.rs"))
        .generate()
        .expect("cbindgen could not generate the header")
        .write(&mut bytes);
    std::fs::write(&out, &bytes).unwrap();
    let committed = crate_dir.join("include/wcpt.h");
    if std::fs::read(&committed).ok().as_deref() != Some(&bytes[..]) {
        if std::env::var("WCPT_HEADER").as_deref() == Ok("check") {
            panic!(
                "include/wcpt.h differs from what cbindgen generates ({}); \
                 run `make header` and commit it",
                out.display()
            );
        }
        std::fs::create_dir_all(committed.parent().unwrap()).unwrap();
        std::fs::write(&committed, &bytes).unwrap();
    }
}

/// Programs linked against `target/<profile>/libwcpt.so` record its SONAME,
/// `libwcpt.so.SOVER`, and look for that name at run time. So that a plain
/// `cargo build` leaves a usable library, create the symlink
/// `libwcpt.so.SOVER -> libwcpt.so` next to it (OUT_DIR is
/// `target/<profile>/build/wcpt-*/out`). It dangles only until the link step.
fn soname_link(sover: &str) {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let Some(profile_dir) = out.ancestors().nth(3) else { return };
    let link = profile_dir.join(format!("libwcpt.so.{sover}"));
    if std::fs::symlink_metadata(&link).is_err() {
        #[cfg(unix)]
        let _ = std::os::unix::fs::symlink("libwcpt.so", &link);
    }
}
