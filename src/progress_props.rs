//! Model-based property tests of the progress tracker (issue 14): random sequences of begin /
//! ack / release / done / abandon (an `Ack` dropped without `done`) / checkpoint operations,
//! checked after every step against a reference model of the low watermark.
//!
//! The model: an item is complete once the router released it and every ack it handed out is
//! done; an abandoned ack (and a ticket dropped without `release`) makes it never complete, so a
//! successor replays it. The cursor is at the highest sequence number below which (inclusive)
//! every item is complete, at the position of the last such item that had one (else the start).

use proptest::prelude::*;

use super::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

/// Positions carry their sequence number, so "never backwards" can be checked.
fn pos(seq: u64) -> Position {
    Position {
        resource_version: seq.to_string().into(),
        event_time: None,
        checked_at: None,
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// A new item (occurrence), with or without a position (list items have none).
    Begin { with_position: bool },
    /// The router hands one more ack of a held item to a receiver.
    Ack(usize),
    /// The router is done with a held item.
    Release(usize),
    /// A receiver delivered.
    Done(usize),
    /// A receiver dropped its ack without `done()` (worker cancelled mid-delivery).
    Abandon(usize),
    /// An item routed nowhere, released at once (a checkpoint: list end, bookmark, filtered).
    Checkpoint { with_position: bool },
    /// The router dropped a ticket without releasing it (cancelled while routing).
    DropTicket(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(|with_position| Op::Begin { with_position }),
        5 => any::<usize>().prop_map(Op::Ack),
        4 => any::<usize>().prop_map(Op::Release),
        6 => any::<usize>().prop_map(Op::Done),
        1 => any::<usize>().prop_map(Op::Abandon),
        2 => any::<bool>().prop_map(|with_position| Op::Checkpoint { with_position }),
        1 => any::<usize>().prop_map(Op::DropTicket),
    ]
}

#[derive(Debug, Default)]
struct Item {
    position: Option<Position>,
    released: bool,
    owed: usize,
    /// An ack was dropped, or the ticket was: never complete.
    lost: bool,
}

/// The reference model.
#[derive(Debug)]
struct Model {
    start: Option<Position>,
    /// Index `i` is sequence number `i + 1`.
    items: Vec<Item>,
    abandoned: u64,
}

impl Model {
    fn complete(&self, seq: u64) -> bool {
        let it = &self.items[(seq - 1) as usize];
        it.released && it.owed == 0 && !it.lost
    }

    fn cursor(&self) -> Cursor {
        let seq = self
            .items
            .iter()
            .position(|it| !(it.released && it.owed == 0 && !it.lost))
            .unwrap_or(self.items.len()) as u64;
        let position = self.items[..seq as usize]
            .iter()
            .rev()
            .find_map(|it| it.position.clone())
            .or_else(|| self.start.clone());
        Cursor { seq, position }
    }
}

/// Runs the operations, checking the tracker against the model after each one.
fn run(start: Option<Position>, ops: &[Op]) -> Result<(), TestCaseError> {
    let tracker = Tracker::new(start.clone());
    let rx = tracker.subscribe();
    let mut model = Model {
        start,
        items: Vec::new(),
        abandoned: 0,
    };
    // What the router and the receivers hold.
    let mut tickets: Vec<Ticket> = Vec::new();
    let mut acks: Vec<Ack> = Vec::new();
    let mut last = tracker.cursor();
    prop_assert_eq!(&last, &model.cursor());
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Begin { with_position } | Op::Checkpoint { with_position } => {
                let seq = model.items.len() as u64 + 1;
                let position = with_position.then(|| pos(seq));
                let t = tracker.begin(position.clone());
                prop_assert_eq!(t.seq(), seq, "sequence numbers are consecutive");
                model.items.push(Item {
                    position,
                    ..Item::default()
                });
                if matches!(op, Op::Checkpoint { .. }) {
                    t.release();
                    model.items[(seq - 1) as usize].released = true;
                } else {
                    tickets.push(t);
                }
            }
            Op::Ack(i) if !tickets.is_empty() => {
                let t = &tickets[i % tickets.len()];
                let a = t.ack();
                prop_assert_eq!(a.seq(), t.seq());
                model.items[(t.seq() - 1) as usize].owed += 1;
                acks.push(a);
            }
            Op::Release(i) if !tickets.is_empty() => {
                let t = tickets.swap_remove(i % tickets.len());
                model.items[(t.seq() - 1) as usize].released = true;
                t.release();
            }
            Op::Done(i) if !acks.is_empty() => {
                let a = acks.swap_remove(i % acks.len());
                model.items[(a.seq() - 1) as usize].owed -= 1;
                a.done();
            }
            Op::Abandon(i) if !acks.is_empty() => {
                let a = acks.swap_remove(i % acks.len());
                let it = &mut model.items[(a.seq() - 1) as usize];
                it.owed -= 1;
                it.lost = true;
                model.abandoned += 1;
                drop(a);
            }
            Op::DropTicket(i) if !tickets.is_empty() => {
                let t = tickets.swap_remove(i % tickets.len());
                model.items[(t.seq() - 1) as usize].lost = true;
                drop(t);
            }
            _ => continue,
        }
        let got = tracker.cursor();
        let want = model.cursor();
        prop_assert_eq!(&got, &want, "step {}: {:?}", step, op);
        // Never backwards: neither the sequence number nor the position.
        prop_assert!(got.seq >= last.seq, "cursor seq went back at step {step}");
        let rv = |c: &Cursor| {
            c.position
                .as_ref()
                .map(|p| p.resource_version.parse::<u64>().expect("numeric"))
        };
        prop_assert!(
            rv(&got) >= rv(&last),
            "cursor position went back at step {step}"
        );
        // Nothing incomplete is at or behind the cursor.
        for seq in 1..=got.seq {
            prop_assert!(
                model.complete(seq),
                "item {seq} is behind the cursor but incomplete"
            );
        }
        // Everything after the cursor is still tracked; nothing before it is.
        prop_assert_eq!(
            tracker.in_flight() as u64,
            model.items.len() as u64 - got.seq,
            "in_flight at step {}",
            step
        );
        prop_assert_eq!(tracker.abandoned(), model.abandoned);
        // Subscribers see the same cursor.
        prop_assert_eq!(&*rx.borrow(), &got);
        last = got;
    }
    // Finishing every outstanding delivery completes everything not lost.
    for t in tickets.drain(..) {
        model.items[(t.seq() - 1) as usize].released = true;
        t.release();
    }
    for a in acks.drain(..) {
        model.items[(a.seq() - 1) as usize].owed -= 1;
        a.done();
    }
    prop_assert_eq!(tracker.cursor(), model.cursor());
    if model.items.iter().all(|it| !it.lost) {
        prop_assert_eq!(tracker.in_flight(), 0);
        prop_assert_eq!(tracker.cursor().seq, model.items.len() as u64);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Random operation sequences against the model, from a fresh or a resumed cursor.
    #[test]
    fn cursor_follows_the_model(
        resumed in any::<bool>(),
        ops in prop::collection::vec(op(), 0..200),
    ) {
        run(resumed.then(|| pos(0)), &ops)?;
    }

    /// Concurrent receivers: acks done from several threads in random order end with the
    /// cursor at the last item, and every cursor a subscriber observes is monotonic.
    #[test]
    fn concurrent_acks_reach_the_end(
        acks_per_item in prop::collection::vec(0usize..4, 1..60),
        order_seed in any::<u64>(),
        with_position in prop::collection::vec(any::<bool>(), 60),
    ) {
        let tracker = Tracker::new(None);
        let mut acks = Vec::new();
        for (i, n) in acks_per_item.iter().enumerate() {
            let t = tracker.begin(with_position[i].then(|| pos(i as u64 + 1)));
            for _ in 0..*n {
                acks.push(t.ack());
            }
            t.release();
        }
        // A deterministic shuffle from the seed, then two threads share the work.
        let mut state = order_seed | 1;
        for i in (1..acks.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            acks.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let half = acks.split_off(acks.len() / 2);
        let total = acks_per_item.len() as u64;
        let mut rx = tracker.subscribe();
        let watcher = std::thread::spawn(move || {
            let mut seen = vec![rx.borrow_and_update().clone()];
            // The sender lives in the tracker; stop once the last item is complete.
            while seen.last().is_some_and(|c| c.seq < total) {
                if futures::executor::block_on(rx.changed()).is_err() {
                    break;
                }
                seen.push(rx.borrow_and_update().clone());
            }
            seen
        });
        let worker = std::thread::spawn(move || half.into_iter().for_each(Ack::done));
        acks.into_iter().for_each(Ack::done);
        worker.join().expect("worker");
        let seen = watcher.join().expect("watcher");
        prop_assert_eq!(tracker.in_flight(), 0);
        prop_assert_eq!(tracker.abandoned(), 0);
        prop_assert_eq!(tracker.cursor().seq, total);
        prop_assert_eq!(seen.last().map(|c| c.seq), Some(total));
        let last_pos = (1..=total).rev().find(|s| with_position[(*s - 1) as usize]).map(pos);
        prop_assert_eq!(tracker.cursor().position, last_pos);
        for w in seen.windows(2) {
            prop_assert!(w[0].seq <= w[1].seq, "observed cursor went back: {:?}", w);
        }
    }
}
