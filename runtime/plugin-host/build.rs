//! Builds the guest workspace `plugins/` (bundled plugins and test-only guests) for
//! `wasm32-wasip2`, so the `dibop` binary can embed the bundled plugins and the tests can load
//! the test guests. Guests build in their own cargo workspace and target directory (next to the
//! host's target directory), only when their sources, the SDK or the WIT change.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root =
        manifest_dir.parent().and_then(Path::parent).expect("runtime/plugin-host is two levels down").to_path_buf();
    for watched in ["wit", "sdk/src", "sdk/Cargo.toml", "plugins"] {
        watch(&root.join(watched));
    }
    println!("cargo:rerun-if-env-changed=DIBOP_SKIP_GUEST_BUILD");

    let guest_target = guest_target_dir();
    let out = guest_target.join(TARGET).join("release");
    println!("cargo:rustc-env=DIBOP_GUEST_DIR={}", out.display());
    if std::env::var_os("DIBOP_SKIP_GUEST_BUILD").is_some() {
        return;
    }

    ensure_wasm_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--locked", "--target", TARGET, "--manifest-path"])
        .arg(root.join("plugins/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &guest_target);
    // The outer build's settings must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        command.env_remove(var);
    }
    let status = command.status().expect("running cargo for the guest workspace");
    assert!(status.success(), "building plugins/ for {TARGET} failed");
}

/// `<host target dir>/wasm-plugins`, derived from OUT_DIR (`<target>/<profile>/build/<pkg>/out`).
fn guest_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let target = out_dir.ancestors().nth(4).expect("OUT_DIR is inside the target directory");
    target.join("wasm-plugins")
}

fn ensure_wasm_target() {
    let sysroot = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc --print sysroot");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if Path::new(&sysroot).join("lib/rustlib").join(TARGET).exists() {
        return;
    }
    let status = Command::new("rustup").args(["target", "add", TARGET]).status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "the {TARGET} target is missing and `rustup target add {TARGET}` failed"
    );
}

/// Cargo re-runs this script when anything under `path` changes (it scans directories).
fn watch(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}
