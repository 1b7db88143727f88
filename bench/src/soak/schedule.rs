//! The fault schedule: a pure function of the seed and the duration, so a failing run is
//! reproduced by passing its seed again (only timing noise differs).
//!
//! Two tracks run side by side. The *process* track signals replicas (and stages an outage during
//! which nobody watches); the *environment* track breaks the API server and the webhook. Each track
//! walks through rounds, every round a seeded shuffle of all its kinds, so even a one-minute run
//! meets most kinds and a long run meets each of them many times; faults of one track never
//! overlap, faults of the two tracks do.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// No fault before this: the first leader must be exporting.
pub const WARMUP: Duration = Duration::from_secs(8);
/// No fault starts later than this before the end, so the last one has healed before the check.
pub const COOLDOWN: Duration = Duration::from_secs(12);

/// Which replica a fault hits, resolved when it runs (who leads is not known in advance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Leader,
    Standby,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Term,
    Hup,
    Kill,
    /// SIGTERM, then a second SIGTERM once the leader logs that it is draining.
    TermTwice,
}

impl Sig {
    pub fn name(self) -> &'static str {
        match self {
            Sig::Term | Sig::TermTwice => "TERM",
            Sig::Hup => "HUP",
            Sig::Kill => "KILL",
        }
    }
}

/// How the in-process webhook answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookMode {
    Up,
    /// Connections are dropped (no HTTP answer at all).
    Down,
    /// Each request waits this long, then succeeds.
    Slow(Duration),
    /// Each request is answered with this status and not recorded.
    Errors(u16),
    /// Each request is held past the exporter's timeout, then answered 503 and not recorded.
    Hang,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Signal {
        target: Target,
        sig: Sig,
    },
    /// Every replica stops gracefully; while nobody watches, `delete` events created meanwhile are
    /// deleted (as the event TTL would) and the history is compacted, then two replicas start.
    Outage {
        nobody_for: Duration,
        delete: usize,
    },
    ApiErrors {
        status: u16,
        requests: u64,
    },
    DropWatches,
    /// The watch history is compacted while the leader's watch is being re-established, so it
    /// resumes from a compacted resourceVersion (410).
    Compaction,
    /// Like `Compaction`, but watches from a compacted resourceVersion answer an empty 200 (events
    /// have no watch cache on real servers) for `lasting`.
    StaleWatches {
        lasting: Duration,
    },
    /// Lease writes of one replica fail.
    Partition {
        target: Target,
        lasting: Duration,
    },
    /// Every API request fails (or waits longer than the lease) for longer than the lease.
    ApiDown {
        lasting: Duration,
        by_latency: bool,
    },
    Webhook {
        mode: HookMode,
        lasting: Duration,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub at: Duration,
    pub action: Action,
}

impl Fault {
    /// The name counted in the summary line.
    pub fn kind(&self) -> &'static str {
        match &self.action {
            Action::Signal { target, sig } => match (sig, target) {
                (Sig::Term, Target::Leader) => "sigterm-leader",
                (Sig::Term, Target::Standby) => "sigterm-standby",
                (Sig::Hup, Target::Leader) => "sighup-leader",
                (Sig::Hup, Target::Standby) => "sighup-standby",
                (Sig::Kill, Target::Leader) => "sigkill-leader",
                (Sig::Kill, Target::Standby) => "sigkill-standby",
                (Sig::TermTwice, _) => "sigterm-twice",
            },
            Action::Outage { .. } => "outage-expiry",
            Action::ApiErrors { status: 429, .. } => "api-429",
            Action::ApiErrors { .. } => "api-500",
            Action::DropWatches => "drop-watches",
            Action::Compaction => "compaction-410",
            Action::StaleWatches { .. } => "stale-watch",
            Action::Partition {
                target: Target::Leader,
                ..
            } => "partition-leader",
            Action::Partition { .. } => "partition-standby",
            Action::ApiDown { .. } => "api-down",
            Action::Webhook { mode, .. } => match mode {
                HookMode::Up => "webhook-up",
                HookMode::Down => "webhook-down",
                HookMode::Slow(_) => "webhook-slow",
                HookMode::Errors(_) => "webhook-5xx",
                HookMode::Hang => "webhook-hang",
            },
        }
    }

    /// How long the fault itself lasts (its track waits this long before the next gap).
    pub fn lasting(&self) -> Duration {
        match &self.action {
            Action::Signal {
                sig: Sig::TermTwice,
                ..
            } => Duration::from_secs(5),
            Action::Signal { .. } => Duration::ZERO,
            Action::Outage { nobody_for, .. } => *nobody_for + Duration::from_secs(3),
            Action::Compaction => Duration::from_millis(500),
            Action::StaleWatches { lasting }
            | Action::Partition { lasting, .. }
            | Action::ApiDown { lasting, .. }
            | Action::Webhook { lasting, .. } => *lasting,
            Action::ApiErrors { .. } | Action::DropWatches => Duration::ZERO,
        }
    }

    pub fn is_process(&self) -> bool {
        matches!(self.action, Action::Signal { .. } | Action::Outage { .. })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: &Duration| d.as_millis();
        write!(f, "{:>7.1}s {:<18}", self.at.as_secs_f64(), self.kind())?;
        match &self.action {
            Action::Outage { nobody_for, delete } => {
                write!(
                    f,
                    " nobody watches {}ms, {delete} events deleted",
                    ms(nobody_for)
                )
            }
            Action::ApiErrors { status, requests } => {
                write!(f, " next {requests} requests {status}")
            }
            Action::Webhook {
                mode: HookMode::Slow(d),
                lasting,
            } => write!(f, " {}ms per request for {}ms", ms(d), ms(lasting)),
            Action::Webhook {
                mode: HookMode::Errors(s),
                lasting,
            } => write!(f, " status {s} for {}ms", ms(lasting)),
            Action::ApiDown {
                lasting,
                by_latency,
            } => write!(
                f,
                " {} for {}ms",
                if *by_latency { "latency" } else { "500s" },
                ms(lasting)
            ),
            a => match self.lasting() {
                d if d.is_zero() || matches!(a, Action::Signal { .. } | Action::Compaction) => {
                    Ok(())
                }
                d => write!(f, " for {}ms", ms(&d)),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub faults: Vec<Fault>,
}

/// What each track's rounds are made of; a kind listed twice comes twice per round.
#[derive(Clone, Copy)]
enum Kind {
    Signal(Target, Sig),
    Outage,
    Api429,
    Api500,
    DropWatches,
    Compaction,
    Stale,
    Partition(Target),
    ApiDown,
    Hook(u8),
}

const PROCESS_ROUND: &[Kind] = &[
    Kind::Signal(Target::Leader, Sig::Kill),
    Kind::Signal(Target::Leader, Sig::Term),
    Kind::Signal(Target::Leader, Sig::TermTwice),
    Kind::Signal(Target::Leader, Sig::Hup),
    Kind::Outage,
    Kind::Signal(Target::Standby, Sig::Term),
    Kind::Signal(Target::Leader, Sig::Kill),
    Kind::Signal(Target::Standby, Sig::Kill),
    Kind::Signal(Target::Leader, Sig::Term),
    Kind::Signal(Target::Standby, Sig::Hup),
];

const ENV_ROUND: &[Kind] = &[
    Kind::Api500,
    Kind::Partition(Target::Leader),
    Kind::Hook(0),
    Kind::Compaction,
    Kind::ApiDown,
    Kind::Hook(1),
    Kind::Api429,
    Kind::Stale,
    Kind::Hook(2),
    Kind::DropWatches,
    Kind::Hook(3),
    Kind::Partition(Target::Standby),
];

fn between(rng: &mut StdRng, lo_ms: u64, hi_ms: u64) -> Duration {
    Duration::from_millis(rng.random_range(lo_ms..=hi_ms))
}

fn action(kind: Kind, rng: &mut StdRng) -> Action {
    match kind {
        Kind::Signal(target, sig) => Action::Signal { target, sig },
        Kind::Outage => Action::Outage {
            nobody_for: between(rng, 4000, 7000),
            delete: rng.random_range(5..=20),
        },
        Kind::Api429 => Action::ApiErrors {
            status: 429,
            requests: rng.random_range(5..=40),
        },
        Kind::Api500 => Action::ApiErrors {
            status: 500,
            requests: rng.random_range(5..=40),
        },
        Kind::DropWatches => Action::DropWatches,
        Kind::Compaction => Action::Compaction,
        Kind::Stale => Action::StaleWatches {
            lasting: between(rng, 3000, 6000),
        },
        Kind::Partition(target) => Action::Partition {
            target,
            lasting: between(rng, 2500, 6000),
        },
        // Longer than the 3 s lease: the leader loses it and a new epoch starts afterwards.
        Kind::ApiDown => Action::ApiDown {
            lasting: Duration::from_secs(5),
            by_latency: rng.random_bool(0.5),
        },
        Kind::Hook(n) => {
            let mode = match n {
                0 => HookMode::Down,
                1 => HookMode::Slow(between(rng, 300, 1500)),
                2 => HookMode::Errors(if rng.random_bool(0.5) { 500 } else { 503 }),
                _ => HookMode::Hang,
            };
            Action::Webhook {
                mode,
                lasting: between(rng, 2000, 8000),
            }
        }
    }
}

/// One track: rounds of shuffled kinds, separated by gaps drawn in `gap_ms`.
fn track(
    rng: &mut StdRng,
    round: &[Kind],
    gap_ms: (u64, u64),
    end: Duration,
    out: &mut Vec<Fault>,
) {
    let mut at = WARMUP + between(rng, 0, 3000);
    let mut kinds: Vec<Kind> = Vec::new();
    // Bounded: every fault advances `at` by at least the smallest gap.
    while at < end {
        if kinds.is_empty() {
            kinds = round.to_vec();
            kinds.shuffle(rng);
        }
        let Some(kind) = kinds.pop() else { break };
        let fault = Fault {
            at,
            action: action(kind, rng),
        };
        at += fault.lasting() + between(rng, gap_ms.0, gap_ms.1);
        out.push(fault);
    }
}

impl Schedule {
    /// The faults of a run, in start order. Pure: same seed and duration, same schedule.
    pub fn draw(seed: u64, duration: Duration) -> Self {
        let end = duration.saturating_sub(COOLDOWN);
        let mut faults = Vec::new();
        // One generator per track, so the tracks do not shift each other when one changes.
        let mut process = StdRng::seed_from_u64(seed ^ 0x70_726f_6365_7373);
        let mut env = StdRng::seed_from_u64(seed ^ 0x65_6e76_6972_6f6e);
        track(&mut process, PROCESS_ROUND, (5000, 10000), end, &mut faults);
        track(&mut env, ENV_ROUND, (2000, 5000), end, &mut faults);
        faults.sort_by_key(|f| f.at);
        Self { faults }
    }

    /// Faults per kind.
    pub fn by_kind<'a>(
        faults: impl IntoIterator<Item = &'a Fault>,
    ) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for f in faults {
            *m.entry(f.kind()).or_default() += 1;
        }
        m
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for fault in &self.faults {
            writeln!(f, "{fault}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_a_function_of_seed_and_duration() {
        let d = Duration::from_secs(240);
        assert_eq!(Schedule::draw(7, d), Schedule::draw(7, d));
        assert_ne!(Schedule::draw(7, d), Schedule::draw(8, d));
    }

    #[test]
    fn faults_fit_between_warmup_and_cooldown_and_tracks_do_not_overlap() {
        let d = Duration::from_secs(240);
        let s = Schedule::draw(42, d);
        assert!(s.faults.len() > 30, "{s}");
        for f in &s.faults {
            assert!(f.at >= WARMUP && f.at < d - COOLDOWN, "{f}");
        }
        for process in [true, false] {
            let track: Vec<&Fault> = s
                .faults
                .iter()
                .filter(|f| f.is_process() == process)
                .collect();
            for w in track.windows(2) {
                assert!(w[0].at + w[0].lasting() < w[1].at, "{} then {}", w[0], w[1]);
            }
        }
    }

    #[test]
    fn a_short_run_still_meets_several_kinds() {
        let s = Schedule::draw(1, Duration::from_secs(60));
        assert!(Schedule::by_kind(&s.faults).len() >= 6, "{s}");
    }

    #[test]
    fn too_short_a_run_has_no_faults() {
        assert!(Schedule::draw(1, Duration::from_secs(15)).faults.is_empty());
    }
}
