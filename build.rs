//! Embeds the git revision for `--version` and the build-info metric, and packs the executable's
//! relative relocations.
fn main() {
    // A position-independent executable has its pointers in read-only data fixed up by the loader
    // at start. As RELA entries, 24 bytes each, that table was 640 KB the loader read in and kept
    // resident in every replica; packed (DT_RELR, glibc ≥ 2.36, binutils ≥ 2.38: Debian 12, the
    // image's distroless cc-debian12) it is a few KB.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
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
