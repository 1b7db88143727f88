//! Embeds the git revision for `--version` and the build-info metric.
fn main() {
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
