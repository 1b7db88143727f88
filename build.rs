//! Embeds the git revision for `--version` and the build-info metric, packs the executable's
//! relative relocations and orders its functions for what a replica runs.
fn main() {
    // A position-independent executable has its pointers in read-only data fixed up by the loader
    // at start. As RELA entries, 24 bytes each, that table was 640 KB the loader read in and kept
    // resident in every replica; packed (DT_RELR, glibc ≥ 2.36, binutils ≥ 2.38: Debian 12, the
    // image's distroless cc-debian12) it is a few KB.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    // The functions a standby and a steady leader run, laid out together (scripts/link-order.sh):
    // the kernel maps code 64 KiB around each page touched, and spread over the whole text they
    // kept 8 MiB of it resident in an idle standby. Rust links with its own lld on this target
    // (since 1.90), which takes the order; KEE_LINK_ORDER=0 leaves it out (another linker).
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=KEE_LINK_ORDER");
    let wanted = std::env::var("KEE_LINK_ORDER").map_or(true, |v| v != "0");
    let order = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("link-order.txt");
    if wanted && target == "x86_64-unknown-linux-gnu" && order.exists() {
        println!(
            "cargo:rustc-link-arg-bin=kube-event-exporter=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names the build does not have (changed code, another target's symbols) are skipped.
        println!("cargo:rustc-link-arg-bin=kube-event-exporter=-Wl,--no-warn-symbol-ordering");
    }
    let rev = std::env::var("KEE_GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            std::process::Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
        });
    println!(
        "cargo:rustc-env=KEE_GIT_REVISION={}",
        rev.unwrap_or_else(|| "unknown".into())
    );
    println!("cargo:rerun-if-env-changed=KEE_GIT_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
