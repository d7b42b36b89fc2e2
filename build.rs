//! Records the compiler's version for the `runtime_version` tag of uploads.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=RUSTC");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_owned));
    if let Some(v) = version {
        println!("cargo:rustc-env=LOCKPROF_RUSTC_VERSION={v}");
    }
}
