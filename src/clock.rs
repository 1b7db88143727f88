//! A monotonic clock for bookkeeping read once per occurrence or frame (the age of what is owed,
//! the source's heartbeat), where a few milliseconds of resolution are plenty. The kernel's coarse
//! clock is one read of a value the vDSO keeps; `Instant::now` reads the TSC and scales it, and was
//! 2–3% of the exporter's CPU in the benchmark profile at three reads per occurrence.

use std::time::Duration;

/// Time since an arbitrary fixed point (boot, on Linux), to within [`coarse_resolution`].
#[cfg(target_os = "linux")]
pub fn coarse_now() -> Duration {
    coarse(libc::clock_gettime)
}

/// How far [`coarse_now`] may lag the precise clock (one kernel tick, 1–10 ms).
#[cfg(target_os = "linux")]
pub fn coarse_resolution() -> Duration {
    coarse(libc::clock_getres)
}

/// `clock_gettime` or `clock_getres` of CLOCK_MONOTONIC_COARSE.
#[cfg(target_os = "linux")]
#[inline]
fn coarse(
    read: unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int,
) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into; CLOCK_MONOTONIC_COARSE exists since
    // Linux 2.6.32, and neither call fails with a valid clock and pointer.
    unsafe { read(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
pub fn coarse_now() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

#[cfg(not(target_os = "linux"))]
pub fn coarse_resolution() -> Duration {
    Duration::ZERO
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_precise_clock_within_its_resolution() {
        let (coarse, precise) = (coarse_now(), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (coarse_took, precise_took) = (coarse_now() - coarse, precise.elapsed());
        let res = coarse_resolution();
        assert!(res < Duration::from_millis(20), "resolution {res:?}");
        assert!(
            coarse_took + res >= precise_took.saturating_sub(res)
                && coarse_took <= precise_took + res,
            "coarse {coarse_took:?}, precise {precise_took:?}, resolution {res:?}"
        );
    }
}
