//! The source as a state machine, in the manner of kube-runtime's watcher: a [`Phase`] says which
//! request to make next, the driver (`Source::run`) makes it and reports an [`Outcome`], and the
//! pure [`step`] decides the next phase, plus the [`Action`]s (metrics, log lines, the replay's
//! fallback) the driver carries out. Every decision about 410, stale watches, backoff and where to
//! resume is here, testable without HTTP; the driver only does I/O.
//!
//! ```text
//!  Start::Cold ─► List{Cold}                       Start::Resume(cursor) ─► Watch{from: cursor}
//!
//!  List{kind} ──── listed ─────────────────────────────────► Watch{from: list, or replay start}
//!  List{kind} ──── error ───► Backoff ── waited ──► List{kind}                (failures + 1)
//!
//!  Watch{from} ─── closed, not empty or not at once ───────► Watch{from: last frame}
//!  Watch{from} ─── error ───► Backoff ── waited ──► Watch{from: last frame}   (failures + 1,
//!                                                            or 1 if the watch had connected)
//!  Watch{from} ─── closed at once, empty, n-th time ─┬─────► Backoff(n · 100 ms) ─► Watch   (n < N)
//!                                                    └─────► List{Relist}: history gone (n = N)
//!  Watch{from} ─── 410 (HTTP or ERROR frame) ──────────────► List{Relist}: history gone
//!  Watch{from} ─── 410, or empty at once, while replaying ─► Relocate
//!
//!  Relocate ───── a later start is served ────────────────► Watch{from: that start}
//!  Relocate ───── none is ─────────────────────────────────► Watch{from: list} (replay abandoned)
//!  Relocate ───── error ───► Backoff ── waited ──► Relocate                   (failures + 1)
//!
//!  any ────────── stopped, or an error retrying cannot fix ─► Done
//! ```
//!
//! N is `stale_after_empty_watches`: events have no watch cache, and API servers answer a watch
//! from a stale resourceVersion with an empty 200 instead of 410 (kubernetes#104171).
//!
//! History gone is not by itself a gap: the relist exports every event still in the API, and
//! whether anything can be missing is judged once it is done (`gap`).

use std::time::Duration;

use super::{SourceConfig, SourceError, Start};

/// A watch that ends sooner than this with nothing in it counts as empty (a stale-watch candidate).
pub const QUICK_CLOSE: Duration = Duration::from_secs(1);

/// The pause after the n-th empty watch in a row is n times this: do not spin on a server that
/// closes at once.
pub const EMPTY_WATCH_PAUSE: Duration = Duration::from_millis(100);

/// The shortest backoff, so a jitter of zero cannot make a retry loop spin.
pub const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// What the source does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// List every event, page by page, then watch from the list.
    List { kind: ListKind, failures: u32 },
    /// Watch from `from`. `empty_watches`: watches in a row that ended at once with nothing in
    /// them. `failures`: requests in a row that failed (the backoff's exponent).
    Watch {
        from: String,
        empty_watches: u32,
        failures: u32,
    },
    /// A cold start's replay found the history before its start gone: find the earliest later
    /// start still served (`replay::Replay::next_probe`), or give the replay up.
    Relocate { failures: u32 },
    /// Wait `delay`, then go on with `then`.
    Backoff { delay: Duration, then: Box<Phase> },
    /// Stopped: cancelled, nobody receives, or an error that retrying cannot fix.
    Done,
}

/// Why a list is made; decides what of it is exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    /// No position yet: export what is younger than `max_event_age`.
    Cold,
    /// The history after `after` (the stream's position) is gone: export only what this process
    /// has not seen.
    Relist { after: String },
}

impl ListKind {
    /// The `kind` field of the `listed events` line.
    pub fn label(&self) -> &'static str {
        match self {
            ListKind::Cold => "Cold",
            ListKind::Relist { .. } => "Relist",
        }
    }
}

/// What the request of the last phase produced.
#[derive(Debug)]
pub enum Outcome {
    /// The list is complete: watch from `watch_from` (the list's resourceVersion, or where a cold
    /// start's replay of the history begins).
    Listed { watch_from: String },
    /// A list page failed (the pages before it were emitted).
    ListFailed(SourceError),
    /// A watch ended. `at`: the resourceVersion of its last frame (where it started if none).
    /// `replay`: while a cold start's replay is under way, the list's resourceVersion.
    Watched {
        at: String,
        end: WatchEnd,
        replay: Option<String>,
    },
    /// The replay's probes are done: watch from `start`, or (None) give the replay up and watch
    /// from the list's resourceVersion `list_rv`.
    Relocated {
        start: Option<String>,
        list_rv: String,
    },
    /// A probe failed for another reason than lost history.
    RelocateFailed(SourceError),
    /// A backoff's wait is over.
    Waited,
    /// Cancelled, or the receiving side is gone.
    Stopped,
}

impl Outcome {
    pub fn into_error(self) -> Option<SourceError> {
        match self {
            Outcome::ListFailed(e)
            | Outcome::RelocateFailed(e)
            | Outcome::Watched {
                end: WatchEnd::Failed(e),
                ..
            } => Some(e),
            _ => None,
        }
    }
}

/// How a watch ended.
#[derive(Debug)]
pub enum WatchEnd {
    /// The stream ended: the server's timeout, a close, silence past the timeout, or an ERROR
    /// frame other than 410. `frames`: lines received; `elapsed`: since the request.
    Closed { frames: u64, elapsed: Duration },
    /// 410 Gone, as an HTTP status or an ERROR frame: the history after `at` is gone.
    Expired,
    /// The request failed, or the stream broke.
    Failed(SourceError),
}

/// What the driver does besides the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Count a watch restart (`watch_restarts_total{cause}`).
    Restart(Cause),
    /// The history after `resource_version` is gone: say so; the relist that follows judges
    /// whether anything can be missing.
    HistoryGone {
        resource_version: String,
        gone: Gone,
    },
    /// A cold start's replay found the history through `at` gone (`why`): the replay marks every
    /// start up to there as gone, and `Relocate` looks for a later one.
    ReplayGone { at: String, why: &'static str },
    /// A cold start's replay cannot read any of its history: say so, emit the list's checkpoint,
    /// and watch from the list as without a replay. Not a gap: the list exported every event.
    AbandonReplay { why: &'static str },
    /// The request failed: mark the API unreachable and log the error with this attempt number.
    Retry { attempt: u32 },
}

/// The `cause` label of `watch_restarts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Expired,
    Stale,
    Empty,
    Closed,
    Error,
}

impl Cause {
    pub fn label(self) -> &'static str {
        match self {
            Cause::Expired => "expired",
            Cause::Stale => "stale",
            Cause::Empty => "empty",
            Cause::Closed => "closed",
            Cause::Error => "error",
        }
    }
}

/// How the server told us the history is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// 410 Gone.
    Expired,
    /// This many watches in a row ended at once with nothing in them.
    Stale { empty_watches: u32 },
}

impl Phase {
    pub fn start(start: Start) -> Phase {
        match start {
            Start::Cold => Phase::List {
                kind: ListKind::Cold,
                failures: 0,
            },
            Start::Resume(pos) => Phase::fresh_watch(pos.resource_version.into()),
        }
    }

    /// A watch after a success: no empty watches or failures to carry on.
    fn fresh_watch(from: String) -> Phase {
        Phase::Watch {
            from,
            empty_watches: 0,
            failures: 0,
        }
    }
}

/// The next phase after `phase` produced `outcome`. `jitter` (0 to 1) scales a backoff (full
/// jitter); passed in so this stays deterministic.
///
/// Panics if `outcome` cannot come from `phase` (a list outcome after a watch, say): the driver
/// makes the request the phase names, so that is a bug.
pub fn step(
    phase: Phase,
    outcome: &Outcome,
    cfg: &SourceConfig,
    jitter: f64,
) -> (Phase, Vec<Action>) {
    match (phase, outcome) {
        (_, Outcome::Stopped) => (Phase::Done, vec![]),
        (_, Outcome::ListFailed(e) | Outcome::RelocateFailed(e))
        | (
            _,
            Outcome::Watched {
                end: WatchEnd::Failed(e),
                ..
            },
        ) if !e.retryable() => (Phase::Done, vec![]),
        (Phase::List { .. }, Outcome::Listed { watch_from }) => {
            (Phase::fresh_watch(watch_from.clone()), vec![])
        }
        (Phase::List { kind, failures }, Outcome::ListFailed(_)) => {
            let attempt = failures + 1;
            let then = Phase::List {
                kind,
                failures: attempt,
            };
            (
                backoff(cfg, attempt, jitter, then),
                vec![Action::Retry { attempt }],
            )
        }
        (
            Phase::Watch {
                empty_watches,
                failures,
                ..
            },
            Outcome::Watched { at, end, replay },
        ) => watched(
            empty_watches,
            failures,
            at,
            end,
            replay.as_deref(),
            cfg,
            jitter,
        ),
        (Phase::Relocate { .. }, Outcome::Relocated { start, list_rv }) => match start {
            Some(start) => (Phase::fresh_watch(start.clone()), vec![]),
            None => (
                Phase::fresh_watch(list_rv.clone()),
                vec![Action::AbandonReplay {
                    why: "no later start is served either",
                }],
            ),
        },
        (Phase::Relocate { failures }, Outcome::RelocateFailed(_)) => {
            let attempt = failures + 1;
            let then = Phase::Relocate { failures: attempt };
            (
                backoff(cfg, attempt, jitter, then),
                vec![Action::Retry { attempt }],
            )
        }
        (Phase::Backoff { then, .. }, Outcome::Waited) => (*then, vec![]),
        (phase, outcome) => unreachable!("{outcome:?} cannot follow {phase:?}"),
    }
}

fn watched(
    empty_watches: u32,
    failures: u32,
    at: &str,
    end: &WatchEnd,
    replay: Option<&str>,
    cfg: &SourceConfig,
    jitter: f64,
) -> (Phase, Vec<Action>) {
    let at = at.to_string();
    let at_once_empty =
        matches!(end, WatchEnd::Closed { frames: 0, elapsed } if *elapsed < QUICK_CLOSE);
    let relist = |failures| Phase::List {
        kind: ListKind::Relist { after: at.clone() },
        failures,
    };
    if replay.is_some() {
        // A healthy replay carries at least the listed events' own writes, so an empty answer is
        // a stale resourceVersion too. Either way the history through `at` is gone: look for a
        // later start.
        let why = match end {
            WatchEnd::Expired => Some("410 Gone"),
            _ if at_once_empty => Some("empty watch"),
            _ => None,
        };
        if let Some(why) = why {
            return (
                Phase::Relocate { failures },
                vec![Action::ReplayGone { at, why }],
            );
        }
    }
    match end {
        // The relist recovers every event still in the API; whether something it cannot recover
        // (an expired event, a count that moved more than once) may be missing, it judges itself.
        WatchEnd::Expired => (
            relist(failures),
            vec![
                Action::HistoryGone {
                    resource_version: at.clone(),
                    gone: Gone::Expired,
                },
                Action::Restart(Cause::Expired),
            ],
        ),
        // A closed watch was answered, so the failures are over. Empty ones in a row mean a stale
        // resourceVersion: the history is as gone as after a 410.
        WatchEnd::Closed { .. } if at_once_empty => {
            let empty_watches = empty_watches + 1;
            if empty_watches >= cfg.stale_after_empty_watches {
                let gap = Action::HistoryGone {
                    resource_version: at.clone(),
                    gone: Gone::Stale { empty_watches },
                };
                (relist(0), vec![gap, Action::Restart(Cause::Stale)])
            } else {
                let then = Phase::Watch {
                    from: at,
                    empty_watches,
                    failures: 0,
                };
                let next = Phase::Backoff {
                    delay: EMPTY_WATCH_PAUSE * empty_watches,
                    then: Box::new(then),
                };
                (next, vec![Action::Restart(Cause::Empty)])
            }
        }
        WatchEnd::Closed { .. } => (Phase::fresh_watch(at), vec![Action::Restart(Cause::Closed)]),
        WatchEnd::Failed(e) => {
            // A watch that was established and then broke starts the backoff over; only failures
            // to (re)connect escalate it.
            let attempt = if e.after_connect() { 1 } else { failures + 1 };
            let then = Phase::Watch {
                from: at,
                empty_watches,
                failures: attempt,
            };
            (
                backoff(cfg, attempt, jitter, then),
                vec![Action::Restart(Cause::Error), Action::Retry { attempt }],
            )
        }
    }
}

fn backoff(cfg: &SourceConfig, attempt: u32, jitter: f64, then: Phase) -> Phase {
    Phase::Backoff {
        delay: backoff_delay(cfg, attempt, jitter),
        then: Box::new(then),
    }
}

/// Exponential backoff with full jitter: `initial_backoff · 2^(attempt - 1)`, capped at
/// `max_backoff`, scaled by `jitter` (0 to 1), at least [`MIN_BACKOFF`].
pub fn backoff_delay(cfg: &SourceConfig, attempt: u32, jitter: f64) -> Duration {
    let exp = cfg
        .initial_backoff
        .saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
    exp.min(cfg.max_backoff)
        .mul_f64(jitter.clamp(0.0, 1.0))
        .max(MIN_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Position;

    fn cfg() -> SourceConfig {
        SourceConfig {
            stale_after_empty_watches: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            ..SourceConfig::default()
        }
    }

    fn watching(from: &str, empty_watches: u32, failures: u32) -> Phase {
        Phase::Watch {
            from: from.into(),
            empty_watches,
            failures,
        }
    }

    fn watched(at: &str, end: WatchEnd) -> Outcome {
        Outcome::Watched {
            at: at.into(),
            end,
            replay: None,
        }
    }

    fn closed(frames: u64, elapsed_ms: u64) -> WatchEnd {
        WatchEnd::Closed {
            frames,
            elapsed: Duration::from_millis(elapsed_ms),
        }
    }

    fn broke(from: &str) -> WatchEnd {
        WatchEnd::Failed(SourceError::WatchBroke {
            from: from.into(),
            source: std::io::Error::other("connection reset"),
        })
    }

    fn refused(from: &str) -> WatchEnd {
        WatchEnd::Failed(SourceError::Watch {
            from: from.into(),
            source: kube::Error::Api(
                kube::core::Status::failure("unavailable", "ServiceUnavailable").boxed(),
            ),
        })
    }

    fn relist(after: &str, failures: u32) -> Phase {
        Phase::List {
            kind: ListKind::Relist {
                after: after.into(),
            },
            failures,
        }
    }

    fn step1(phase: Phase, outcome: Outcome) -> (Phase, Vec<Action>) {
        step(phase, &outcome, &cfg(), 1.0)
    }

    #[test]
    fn a_cold_start_lists_and_a_resumed_one_watches_from_the_cursor() {
        assert_eq!(
            Phase::start(Start::Cold),
            Phase::List {
                kind: ListKind::Cold,
                failures: 0
            }
        );
        let cursor = Position {
            resource_version: "77".into(),
            event_time: None,
            checked_at: None,
        };
        assert_eq!(Phase::start(Start::Resume(cursor)), watching("77", 0, 0));
    }

    #[test]
    fn a_finished_list_watches_from_where_it_says_and_forgets_its_failures() {
        let phase = Phase::List {
            kind: ListKind::Cold,
            failures: 4,
        };
        let listed = Outcome::Listed {
            watch_from: "120".into(),
        };
        assert_eq!(step1(phase, listed), (watching("120", 0, 0), vec![]));
    }

    #[test]
    fn a_closed_watch_resumes_from_its_last_frame() {
        let (next, actions) = step1(watching("100", 2, 3), watched("130", closed(5, 60_000)));
        assert_eq!(next, watching("130", 0, 0));
        assert_eq!(actions, vec![Action::Restart(Cause::Closed)]);
    }

    #[test]
    fn a_slow_empty_watch_is_a_timeout_not_a_stale_candidate() {
        let (next, actions) = step1(watching("100", 2, 0), watched("100", closed(0, 1_500)));
        assert_eq!(next, watching("100", 0, 0));
        assert_eq!(actions, vec![Action::Restart(Cause::Closed)]);
    }

    #[test]
    fn expired_relists_after_the_position_and_says_the_history_is_gone() {
        let (next, actions) = step1(watching("100", 1, 2), watched("140", WatchEnd::Expired));
        // The failure count is carried on: the relist's own failures escalate from it.
        assert_eq!(next, relist("140", 2));
        assert_eq!(
            actions,
            vec![
                Action::HistoryGone {
                    resource_version: "140".into(),
                    gone: Gone::Expired
                },
                Action::Restart(Cause::Expired)
            ]
        );
    }

    #[test]
    fn empty_watches_pause_longer_each_time_then_relist_as_stale() {
        let (next, actions) = step1(watching("100", 0, 2), watched("100", closed(0, 5)));
        assert_eq!(
            next,
            Phase::Backoff {
                delay: Duration::from_millis(100),
                then: Box::new(watching("100", 1, 0))
            }
        );
        assert_eq!(actions, vec![Action::Restart(Cause::Empty)]);

        let (next, _) = step1(watching("100", 1, 0), watched("100", closed(0, 5)));
        assert_eq!(
            next,
            Phase::Backoff {
                delay: Duration::from_millis(200),
                then: Box::new(watching("100", 2, 0))
            }
        );

        let (next, actions) = step1(watching("100", 2, 0), watched("100", closed(0, 5)));
        assert_eq!(next, relist("100", 0));
        assert_eq!(
            actions,
            vec![
                Action::HistoryGone {
                    resource_version: "100".into(),
                    gone: Gone::Stale { empty_watches: 3 }
                },
                Action::Restart(Cause::Stale)
            ]
        );
    }

    #[test]
    fn a_watch_with_frames_resets_the_empty_count() {
        let (next, _) = step1(watching("100", 2, 0), watched("101", closed(1, 5)));
        assert_eq!(next, watching("101", 0, 0));
    }

    #[test]
    fn a_stale_threshold_of_one_relists_on_the_first_empty_watch() {
        let cfg = SourceConfig {
            stale_after_empty_watches: 1,
            ..cfg()
        };
        let (next, _) = step(
            watching("100", 0, 0),
            &watched("100", closed(0, 5)),
            &cfg,
            1.0,
        );
        assert_eq!(next, relist("100", 0));
    }

    #[test]
    fn failing_to_connect_escalates_the_backoff_and_keeps_the_position() {
        let (next, actions) = step1(watching("100", 1, 2), watched("100", refused("100")));
        assert_eq!(
            next,
            Phase::Backoff {
                delay: Duration::from_millis(800),
                then: Box::new(watching("100", 1, 3))
            }
        );
        assert_eq!(
            actions,
            vec![Action::Restart(Cause::Error), Action::Retry { attempt: 3 }]
        );
    }

    #[test]
    fn a_connected_watch_that_breaks_restarts_the_backoff_from_its_last_frame() {
        let (next, actions) = step1(watching("100", 0, 5), watched("150", broke("100")));
        assert_eq!(
            next,
            Phase::Backoff {
                delay: Duration::from_millis(200),
                then: Box::new(watching("150", 0, 1))
            }
        );
        assert_eq!(
            actions,
            vec![Action::Restart(Cause::Error), Action::Retry { attempt: 1 }]
        );
    }

    #[test]
    fn a_failed_list_is_retried_with_the_same_kind_after_a_backoff() {
        let phase = relist("140", 1);
        let failed = Outcome::ListFailed(SourceError::NoListVersion);
        let (next, actions) = step1(phase, failed);
        assert_eq!(
            next,
            Phase::Backoff {
                delay: Duration::from_millis(400),
                then: Box::new(relist("140", 2))
            }
        );
        assert_eq!(actions, vec![Action::Retry { attempt: 2 }]);
    }

    #[test]
    fn a_backoff_goes_on_with_its_phase_once_waited() {
        let phase = Phase::Backoff {
            delay: Duration::from_millis(5),
            then: Box::new(relist("1", 3)),
        };
        assert_eq!(step1(phase, Outcome::Waited), (relist("1", 3), vec![]));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_scales_it_down_to_a_floor() {
        let cfg = cfg();
        let ms = |attempt, jitter| backoff_delay(&cfg, attempt, jitter).as_millis();
        assert_eq!([1, 2, 3, 4].map(|a| ms(a, 1.0)), [200, 400, 800, 1600]);
        assert_eq!(ms(8, 1.0), 25_600);
        assert_eq!(ms(9, 1.0), 30_000);
        assert_eq!(ms(1_000, 1.0), 30_000, "no overflow for long outages");
        assert_eq!(ms(3, 0.5), 400);
        assert_eq!(ms(3, 0.0), MIN_BACKOFF.as_millis());
    }

    #[test]
    fn a_replay_without_history_looks_for_a_later_start_without_a_gap() {
        for (end, why) in [
            (WatchEnd::Expired, "410 Gone"),
            (closed(0, 5), "empty watch"),
        ] {
            let outcome = Outcome::Watched {
                at: "40".into(),
                end,
                replay: Some("90".into()),
            };
            let (next, actions) = step1(watching("10", 1, 2), outcome);
            assert_eq!(next, Phase::Relocate { failures: 2 });
            assert_eq!(
                actions,
                vec![Action::ReplayGone {
                    at: "40".into(),
                    why
                }]
            );
        }
    }

    #[test]
    fn a_relocated_replay_watches_from_its_new_start_or_falls_back_to_the_list() {
        let found = Outcome::Relocated {
            start: Some("55".into()),
            list_rv: "90".into(),
        };
        assert_eq!(
            step1(Phase::Relocate { failures: 3 }, found),
            (watching("55", 0, 0), vec![])
        );
        let none = Outcome::Relocated {
            start: None,
            list_rv: "90".into(),
        };
        let (next, actions) = step1(Phase::Relocate { failures: 0 }, none);
        assert_eq!(next, watching("90", 0, 0));
        assert!(
            matches!(actions[..], [Action::AbandonReplay { .. }]),
            "{actions:?}"
        );
        let failed = Outcome::RelocateFailed(SourceError::NoListVersion);
        let (next, actions) = step1(Phase::Relocate { failures: 1 }, failed);
        assert_eq!(
            next,
            Phase::Backoff {
                delay: Duration::from_millis(400),
                then: Box::new(Phase::Relocate { failures: 2 })
            }
        );
        assert_eq!(actions, vec![Action::Retry { attempt: 2 }]);
    }

    #[test]
    fn a_replay_that_closes_normally_resumes_inside_the_history() {
        let outcome = Outcome::Watched {
            at: "40".into(),
            end: closed(3, 60_000),
            replay: Some("90".into()),
        };
        let (next, actions) = step1(watching("10", 0, 0), outcome);
        assert_eq!(next, watching("40", 0, 0));
        assert_eq!(actions, vec![Action::Restart(Cause::Closed)]);
    }

    #[test]
    fn stopping_ends_every_phase() {
        for phase in [
            Phase::start(Start::Cold),
            watching("1", 0, 0),
            Phase::Backoff {
                delay: Duration::ZERO,
                then: Box::new(watching("1", 0, 0)),
            },
        ] {
            assert_eq!(step1(phase, Outcome::Stopped), (Phase::Done, vec![]));
        }
    }

    #[test]
    fn an_error_retrying_cannot_fix_ends_the_source() {
        let bad = || SourceError::Request {
            op: "watch",
            source: kube::core::request::Error::Validation("bad".into()),
        };
        let (next, actions) = step1(watching("1", 0, 0), watched("1", WatchEnd::Failed(bad())));
        assert_eq!((next, actions), (Phase::Done, vec![]));
        let (next, _) = step1(Phase::start(Start::Cold), Outcome::ListFailed(bad()));
        assert_eq!(next, Phase::Done);
        assert!(Outcome::ListFailed(bad()).into_error().is_some());
    }
}
