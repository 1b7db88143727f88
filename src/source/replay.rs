//! Cold-start replay: the repeats a cold list cannot show.
//!
//! A list holds each event at its current `count`: an event created (count 1) and repeated
//! (count 2) before our first list shows up once, at count 2, and occurrence 1 is never exported.
//! The API still has the intermediate writes in its watch history (etcd keeps about 5 minutes), so
//! after a cold list we watch from a resourceVersion *before* the age window instead of from the
//! list's, and export the earlier counts of the listed events from that history:
//!
//! - **Where from**: the newest resourceVersion of a listed event last seen before the window
//!   (`maxEventAgeSeconds`, plus a margin for clock skew between reporters, the API server and us):
//!   every young occurrence was written after it. No such event (a young or quiet cluster): the start
//!   of history (resourceVersion 1); a server that compacted it answers 410.
//! - **What**: only counts below the listed count of a young listed event, young themselves, each
//!   once. Everything else in the replayed history was exported by the list already (or is too old).
//! - **The cursor** stays behind the list until the replay has passed every listed event's
//!   resourceVersion, so a successor that takes over mid-replay starts cold again rather than
//!   skipping the earlier counts; positions inside the replayed range are never emitted (the
//!   cursor never moves backwards).
//! - **410, or an empty watch** (what servers answer for a stale resourceVersion on events): the
//!   history before that position is gone. A real API server compacts every 5 minutes, so the
//!   start above (an event from before a quiet stretch, or the start of history) is usually gone
//!   while the last minutes, which hold the young occurrences, are not. The replay then finds the
//!   earliest position still served between the gone one and the list, by bisection with probes
//!   that read one line each (about log2 of the distance: 30 probes for a billion revisions), and
//!   replays from there: whatever history is still held is recovered. Only when none is served do
//!   we watch from the list's resourceVersion, as without a replay. Either way the log says how
//!   much was replayed.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;

use crate::event::Event;

/// Slack between the age window and the replay's start, for clocks of event reporters (kubelets,
/// controllers), the API server and this process that do not agree.
pub const CLOCK_MARGIN: Duration = Duration::from_secs(30);

/// The first resourceVersion any server can have: "the start of history".
const HISTORY_START: u64 = 1;

/// Collects what the replay needs while a cold list is read, item by item.
pub struct ListScan {
    /// Occurrences last seen at or after this are young (exported by a cold start).
    young_after: Timestamp,
    /// Events last seen before this were written before any young occurrence.
    before_window: Timestamp,
    newest_before_window: Option<u64>,
    max_rv: u64,
    /// Young listed events whose count says earlier occurrences exist.
    behind: HashMap<String, Behind>,
    /// Every resourceVersion was an integer (comparable; KEP-5504).
    comparable: bool,
}

impl ListScan {
    pub fn new(now: Timestamp, max_age: Duration) -> Self {
        let young_after = now.checked_sub(max_age).unwrap_or(now);
        Self {
            young_after,
            before_window: young_after.checked_sub(CLOCK_MARGIN).unwrap_or(young_after),
            newest_before_window: None,
            max_rv: 0,
            behind: HashMap::new(),
            comparable: true,
        }
    }

    /// Records one listed event; `exported`: the cold list exports it (it is young).
    pub fn record(&mut self, event: &Event, exported: bool) {
        let Ok(rv) = event.resource_version().parse::<u64>() else {
            self.comparable = false;
            return;
        };
        self.max_rv = self.max_rv.max(rv);
        if let Some(t) = event.last_seen()
            && t < self.before_window
        {
            self.newest_before_window = Some(self.newest_before_window.unwrap_or(0).max(rv));
        }
        let count = event.occurrence_count();
        if exported && count > 1 {
            let b = Behind {
                listed: count,
                replayed: 0,
            };
            self.behind.insert(event.uid().to_string(), b);
        }
    }

    /// The replay after a list at `list_rv`, if one can find anything.
    pub fn plan(self, list_rv: &str) -> Option<Replay> {
        if self.behind.is_empty() || !self.comparable {
            return None;
        }
        let list_rv_n = list_rv.parse::<u64>().ok()?;
        let from = self.newest_before_window.unwrap_or(HISTORY_START);
        if from >= list_rv_n {
            return None;
        }
        Some(Replay {
            from,
            list_rv: list_rv_n,
            max_listed_rv: self.max_rv,
            young_after: self.young_after,
            behind: self.behind,
            checkpointed: false,
            exported: 0,
            gone: 0,
            served: list_rv_n,
            relocations: 0,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Behind {
    listed: i32,
    /// The highest count exported by the replay so far.
    replayed: i32,
}

/// A replay in progress: watching history from `from` up to the list's resourceVersion.
#[derive(Debug)]
pub struct Replay {
    pub from: u64,
    pub list_rv: u64,
    max_listed_rv: u64,
    young_after: Timestamp,
    behind: HashMap<String, Behind>,
    checkpointed: bool,
    /// Earlier occurrences exported so far.
    pub exported: u64,
    /// The latest start known compacted, and the earliest known served (`list_rv`: none known
    /// before the list, whose own position is where a replay without history goes on).
    gone: u64,
    served: u64,
    /// Times the start moved later because the history before it was gone.
    pub relocations: u32,
}

/// What to do with one watch frame while replaying.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Inside the replayed history. `export`: an earlier occurrence of a listed event, not exported
    /// yet. `checkpoint`: after it, the list's position may be committed (every listed event's
    /// history is replayed).
    Inside { export: bool, checkpoint: bool },
    /// Past the list's resourceVersion: the replay is over; handle the frame as a live one
    /// (after the list's checkpoint, if `checkpoint`).
    Past { checkpoint: bool },
}

impl Replay {
    /// Listed events that may have earlier occurrences.
    pub fn listed_behind(&self) -> usize {
        self.behind.len()
    }

    /// Listed events with earlier counts not all replayed (older than the window, or before the
    /// history that was still held).
    pub fn incomplete(&self) -> usize {
        self.behind
            .values()
            .filter(|b| b.replayed < b.listed - 1)
            .count()
    }

    /// A watch from `at` (at or after the current start) was answered 410 or empty: the history
    /// through `at` is gone, and so is every start at or before it.
    pub fn gone_through(&mut self, at: u64) {
        self.gone = self.gone.max(at);
        if self.served <= self.gone {
            // What was served when probed has been compacted since: probe again.
            self.served = self.list_rv;
        }
    }

    /// The next start to probe, while the earliest served one is not known.
    pub fn next_probe(&self) -> Option<u64> {
        (self.served > self.gone + 1).then(|| self.gone + (self.served - self.gone) / 2)
    }

    /// What a probe from `start` found: `served`, or gone (410, or an empty answer).
    pub fn probed(&mut self, start: u64, served: bool) {
        if served {
            self.served = self.served.min(start);
        } else {
            self.gone = self.gone.max(start);
        }
    }

    /// Once probing is over: the earliest start still served, now the replay's `from`; None when
    /// nothing before the list is (the replay is abandoned).
    pub fn relocate(&mut self) -> Option<u64> {
        if self.served >= self.list_rv {
            return None;
        }
        self.relocations += 1;
        self.from = self.served;
        Some(self.served)
    }

    /// Decides about an ADDED/MODIFIED (`event: Some`) or any other frame at `rv` (`event: None`).
    pub fn step(&mut self, rv: &str, event: Option<&Event>) -> Step {
        let Ok(rv) = rv.parse::<u64>() else {
            // Not comparable: stop replaying rather than guess.
            return Step::Past {
                checkpoint: self.take_checkpoint(),
            };
        };
        if rv > self.list_rv {
            return Step::Past {
                checkpoint: self.take_checkpoint(),
            };
        }
        let export = event.is_some_and(|e| self.earlier_occurrence(e));
        let checkpoint = rv >= self.max_listed_rv && self.take_checkpoint();
        Step::Inside { export, checkpoint }
    }

    /// The history is gone: whether the list's checkpoint still has to be emitted.
    pub fn abandon(&mut self) -> bool {
        self.take_checkpoint()
    }

    fn take_checkpoint(&mut self) -> bool {
        !std::mem::replace(&mut self.checkpointed, true)
    }

    fn earlier_occurrence(&mut self, event: &Event) -> bool {
        let Some(b) = self.behind.get_mut(event.uid()) else {
            return false;
        };
        let count = event.occurrence_count();
        let young = event.last_seen().is_none_or(|t| t >= self.young_after);
        if count >= b.listed || count <= b.replayed || !young {
            return false;
        }
        b.replayed = count;
        self.exported += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(uid: &str, count: i32, rv: u64, seen_secs_ago: i64, now: Timestamp) -> Event {
        let t = now - jiff::SignedDuration::from_secs(seen_secs_ago);
        serde_json::from_value(serde_json::json!({
            "metadata": {"uid": uid, "resourceVersion": rv.to_string(), "name": uid},
            "count": count,
            "lastTimestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }))
        .unwrap()
    }

    const AGE: Duration = Duration::from_secs(60);

    #[test]
    fn no_replay_when_every_young_event_is_at_count_one() {
        let now = Timestamp::now();
        let mut scan = ListScan::new(now, AGE);
        scan.record(&ev("a", 1, 105, 1, now), true);
        scan.record(&ev("old", 7, 101, 3600, now), false);
        assert!(scan.plan("110").is_none());
    }

    #[test]
    fn replays_from_the_newest_event_before_the_window() {
        let now = Timestamp::now();
        let mut scan = ListScan::new(now, AGE);
        scan.record(&ev("old1", 3, 101, 3600, now), false);
        scan.record(&ev("old2", 1, 103, 600, now), false);
        // Old by the age filter but inside the clock margin: not a safe start.
        scan.record(&ev("edge", 1, 104, 70, now), false);
        scan.record(&ev("a", 3, 108, 1, now), true);
        let r = scan.plan("110").expect("a replay");
        assert_eq!(r.from, 103);
        assert_eq!(r.listed_behind(), 1);
    }

    #[test]
    fn replays_from_the_start_of_history_when_nothing_predates_the_window() {
        let now = Timestamp::now();
        let mut scan = ListScan::new(now, AGE);
        scan.record(&ev("a", 2, 104, 1, now), true);
        assert_eq!(scan.plan("104").expect("a replay").from, 1);
    }

    #[test]
    fn non_integer_resource_versions_disable_the_replay() {
        let now = Timestamp::now();
        let mut scan = ListScan::new(now, AGE);
        let mut e = ev("a", 2, 104, 1, now);
        e.metadata.resource_version = Some("abc".into());
        scan.record(&e, true);
        assert!(scan.plan("110").is_none());
    }

    #[test]
    fn exports_each_earlier_count_once_and_checkpoints_after_the_last_listed_write() {
        let now = Timestamp::now();
        let mut scan = ListScan::new(now, AGE);
        scan.record(&ev("a", 3, 106, 1, now), true); // a:1 at 101, a:2 at 103, a:3 at 106
        scan.record(&ev("b", 1, 102, 1, now), true);
        let mut r = scan.plan("108").unwrap();
        let inside = |export, checkpoint| Step::Inside { export, checkpoint };
        assert_eq!(
            r.step("101", Some(&ev("a", 1, 101, 2, now))),
            inside(true, false)
        );
        assert_eq!(
            r.step("102", Some(&ev("b", 1, 102, 2, now))),
            inside(false, false)
        );
        assert_eq!(
            r.step("103", Some(&ev("a", 2, 103, 2, now))),
            inside(true, false)
        );
        // A watch resumed mid-replay may see a frame again: not exported twice.
        assert_eq!(
            r.step("103", Some(&ev("a", 2, 103, 2, now))),
            inside(false, false)
        );
        assert_eq!(
            r.step("106", Some(&ev("a", 3, 106, 1, now))),
            inside(false, true)
        );
        assert_eq!(r.step("107", None), inside(false, false));
        assert_eq!(r.step("109", None), Step::Past { checkpoint: false });
        assert_eq!(r.exported, 2);
    }

    #[test]
    fn old_earlier_counts_are_not_exported() {
        let now = Timestamp::now();
        let mut scan = ListScan::new(now, AGE);
        scan.record(&ev("a", 2, 106, 1, now), true);
        let mut r = scan.plan("108").unwrap();
        assert_eq!(
            r.step("101", Some(&ev("a", 1, 101, 120, now))),
            Step::Inside {
                export: false,
                checkpoint: false
            }
        );
    }

    #[test]
    fn passing_the_list_before_the_last_listed_write_still_checkpoints_once() {
        let now = Timestamp::now();
        let mut scan = ListScan::new(now, AGE);
        scan.record(&ev("a", 2, 106, 1, now), true);
        let mut r = scan.plan("108").unwrap();
        assert_eq!(r.step("120", None), Step::Past { checkpoint: true });
        assert!(!r.abandon());
    }

    /// `a` repeated inside the window after a quiet stretch: the start before the window is an
    /// old event whose history a real server has compacted.
    fn quiet_then_busy(now: Timestamp) -> Replay {
        let mut scan = ListScan::new(now, AGE);
        scan.record(&ev("old", 1, 101, 3600, now), false);
        scan.record(&ev("b", 1, 150, 4, now), true);
        scan.record(&ev("a", 4, 160, 1, now), true); // a:1..3 written between 150 and 160
        scan.record(&ev("c", 1, 170, 1, now), true);
        scan.plan("180").expect("a replay")
    }

    /// Probes until the earliest served start is known, a start being served from `compacted` on.
    fn probe_all(r: &mut Replay, compacted: u64) -> Vec<u64> {
        let mut probes = Vec::new();
        while let Some(p) = r.next_probe() {
            assert!(!probes.contains(&p), "probed {p} twice: {probes:?}");
            probes.push(p);
            r.probed(p, p >= compacted);
        }
        probes
    }

    #[test]
    fn a_gone_start_moves_to_the_earliest_later_start_still_served() {
        let now = Timestamp::now();
        let mut r = quiet_then_busy(now);
        assert_eq!(r.from, 101);
        // The watch from 101 was answered 410: the server compacted at 155.
        r.gone_through(101);
        let probes = probe_all(&mut r, 155);
        assert_eq!(r.relocate(), Some(155), "probed {probes:?}");
        assert_eq!((r.from, r.relocations), (155, 1));
        // Bisection over the 79 positions between the gone start and the list: log2 of that.
        assert!(probes.len() <= 7, "{probes:?}");
        // Nothing was replayed yet: a's earlier counts are not all exported.
        assert_eq!(r.incomplete(), 1);
    }

    #[test]
    fn when_every_start_is_gone_the_replay_is_abandoned() {
        let now = Timestamp::now();
        let mut r = quiet_then_busy(now);
        r.gone_through(101);
        probe_all(&mut r, u64::MAX);
        assert_eq!(r.relocate(), None);
        assert!(r.abandon());
    }

    #[test]
    fn a_start_compacted_after_its_probe_is_probed_past() {
        let now = Timestamp::now();
        let mut r = quiet_then_busy(now);
        r.gone_through(101);
        probe_all(&mut r, 120);
        assert_eq!(r.relocate(), Some(120));
        // The watch from 120 gets 410 after all (compacted again between the probe and the watch).
        r.gone_through(120);
        let probes = probe_all(&mut r, 159);
        assert_eq!(r.relocate(), Some(159), "probed {probes:?}");
        assert_eq!(r.relocations, 2);
    }

    #[test]
    fn a_replay_cut_mid_stream_resumes_from_a_start_after_where_it_was() {
        let now = Timestamp::now();
        let mut r = quiet_then_busy(now);
        // Replaying from 101, the stream broke at 162 and the resumed watch from 162 got 410.
        r.gone_through(162);
        let probes = probe_all(&mut r, 166);
        assert!(probes.iter().all(|p| *p > 162), "{probes:?}");
        assert_eq!(r.relocate(), Some(166));
    }

    #[test]
    fn abandoning_checkpoints_once() {
        let now = Timestamp::now();
        let mut scan = ListScan::new(now, AGE);
        scan.record(&ev("a", 2, 106, 1, now), true);
        let mut r = scan.plan("108").unwrap();
        assert!(r.abandon());
        assert!(!r.abandon());
    }
}
