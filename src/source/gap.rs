//! Whether a relist after lost watch history can have missed anything: a *possible gap*.
//!
//! A watch that resumes from a resourceVersion the API server has compacted (410 Gone, or the empty
//! watches of a stale resourceVersion) relists and exports every event still in the API that this
//! process has not exported. What the relist cannot bring back is only:
//!
//! - **expired events**: an event written after the position and deleted before the relist. The
//!   API server deletes events `--event-ttl` (1 h by default) after their last write, so this is
//!   possible only if the history after the position was last read more than that long ago
//!   (`Position::checked_at`). Compaction alone, every 5 minutes, loses nothing: on a quiet cluster
//!   (no bookmarks for events, Lease renewals moving the revision) every reconnect and every
//!   handover meets it, and calling that a gap made the alert fire with nothing lost.
//! - **collapsed repeats**: the list shows each event at its current `count`; one that moved by
//!   more than one since it was last seen had occurrences that were never stored on their own.
//!
//! Events deleted by hand (a namespace deleted while nobody watched) are not covered: nothing in
//! the API tells them apart from events that never existed.

use std::time::Duration;

use jiff::Timestamp;

/// Clocks of event reporters, the API server and this process that disagree, and the delay of a
/// watch: the read-through time is trusted only this much.
pub const MARGIN: Duration = Duration::from_secs(30);

/// Why events may be missing after a relist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Occurrences (and their events) that happened while the history was gone and were exported
    /// at the event's current count only.
    pub collapsed: Option<(u64, u64)>,
    /// How long before the relist the history after the position was last read, when that is
    /// longer than the event TTL allows (less the margin); `Some(None)`: the position's age is
    /// unknown (a cursor with no time).
    pub unread: Option<Option<Duration>>,
}

impl Gap {
    /// One sentence for the log line.
    pub fn why(&self, event_ttl: Duration) -> String {
        let mut parts = Vec::new();
        if let Some((occurrences, events)) = self.collapsed {
            parts.push(format!(
                "{occurrences} occurrences of {events} events happened while the watch history was gone; each event is exported at its current count"
            ));
        }
        match self.unread {
            Some(Some(age)) => parts.push(format!(
                "the history after the position was last read {}s ago, longer than eventTTL ({}s) allows: events written and expired meanwhile cannot be recovered",
                age.as_secs(),
                event_ttl.as_secs()
            )),
            Some(None) => parts.push(
                "the position has no time, so events may have expired since it was read".into(),
            ),
            None => {}
        }
        parts.join("; ")
    }
}

/// The verdict on a relist made at `listed_at` after the history after a position read through
/// `checked_at` was gone. `superseded`: (occurrences, events) whose count moved by more than one.
pub fn judge(
    checked_at: Option<Timestamp>,
    listed_at: Timestamp,
    event_ttl: Duration,
    superseded: (u64, u64),
) -> Option<Gap> {
    let collapsed = (superseded.0 > 0).then_some(superseded);
    let unread = match checked_at {
        None => Some(None),
        Some(t) => {
            let age = listed_at.duration_since(t).unsigned_abs();
            (age + MARGIN > event_ttl).then_some(Some(age))
        }
    };
    (collapsed.is_some() || unread.is_some()).then_some(Gap { collapsed, unread })
}

/// How long before `now` the history was last read (0 if the time is in the future).
pub fn age(checked_at: Option<Timestamp>, now: Timestamp) -> Option<Duration> {
    checked_at.map(|t| {
        let d = now.duration_since(t);
        if d.is_negative() {
            Duration::ZERO
        } else {
            d.unsigned_abs()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(secs_ago: u64, now: Timestamp) -> Option<Timestamp> {
        Some(now - jiff::SignedDuration::from_secs(secs_ago as i64))
    }

    #[test]
    fn compacted_history_read_recently_with_no_count_jumps_is_no_gap() {
        let now = Timestamp::now();
        // 35 quiet minutes: the position is old, but its history was read moments ago.
        assert_eq!(judge(at(20, now), now, HOUR, (0, 0)), None);
        assert_eq!(judge(at(40 * 60, now), now, HOUR, (0, 0)), None);
    }

    #[test]
    fn history_unread_for_longer_than_the_ttl_is_a_gap() {
        let now = Timestamp::now();
        let gap = judge(at(3600, now), now, HOUR, (0, 0)).expect("a gap");
        assert_eq!(gap.unread, Some(Some(HOUR)));
        assert_eq!(gap.collapsed, None);
        assert!(
            gap.why(HOUR).contains("eventTTL (3600s)"),
            "{}",
            gap.why(HOUR)
        );
        // The margin: clocks and watch delays are not trusted to the second.
        assert!(judge(at(3600 - 29, now), now, HOUR, (0, 0)).is_some());
        assert!(judge(at(3600 - 31, now), now, HOUR, (0, 0)).is_none());
    }

    #[test]
    fn collapsed_repeats_are_a_gap_however_fresh_the_position() {
        let now = Timestamp::now();
        let gap = judge(at(1, now), now, HOUR, (3, 2)).expect("a gap");
        assert_eq!(gap.collapsed, Some((3, 2)));
        assert_eq!(gap.unread, None);
        assert!(gap.why(HOUR).starts_with("3 occurrences of 2 events"));
    }

    #[test]
    fn a_position_without_a_time_is_a_gap() {
        let now = Timestamp::now();
        let gap = judge(None, now, HOUR, (0, 0)).expect("a gap");
        assert_eq!(gap.unread, Some(None));
    }

    #[test]
    fn age_is_never_negative() {
        let now = Timestamp::now();
        let future = Some(now + jiff::SignedDuration::from_secs(5));
        assert_eq!(age(future, now), Some(Duration::ZERO));
        assert_eq!(age(at(7, now), now), Some(Duration::from_secs(7)));
    }
}
