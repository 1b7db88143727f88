//! Test programs from Debian packages (rsyslog, promtool), installed with apt-get on first use
//! when missing: one installer at a time, under a lock in target/. A machine where that is
//! impossible fails the tests that need them with what to install, never skips them.

use std::path::Path;
use std::process::Command;

/// What `find` finds, after installing `packages` if it found nothing. `lock` names the install
/// lock file; `who` says which tests need it, for the panic message.
pub fn ensure<T>(packages: &[&str], lock: &str, who: &str, find: impl Fn() -> Option<T>) -> T {
    if let Some(found) = find() {
        return found;
    }
    // One installer at a time across test binaries and threads.
    let lock_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(lock);
    let lock = std::fs::File::create(&lock_path).expect("the install lock file");
    lock.lock().expect("the install lock");
    if let Some(found) = find() {
        return found;
    }
    match install(packages) {
        Ok(()) => find().unwrap_or_else(|| {
            panic!("{who}: apt-get installed {packages:?} but what they provide is still missing")
        }),
        Err(why) => panic!(
            "{who} need the Debian packages {}, which are missing and could not be installed: \
             {why}. Install them (apt-get install {}) and run the tests again.",
            packages.join(", "),
            packages.join(" ")
        ),
    }
}

fn install(packages: &[&str]) -> Result<(), String> {
    let apt = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map_err(|e| format!("apt-get: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "apt-get {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(packages);
    apt(&install).or_else(|_| {
        apt(&["update", "-q"])?;
        apt(&install)
    })
}
