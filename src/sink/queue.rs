//! A receiver's queue: at most `queue` occurrences wait for the receiver, whichever of its lanes
//! they wait for. A lane that keeps retrying holds its own occurrences back, and the others go on
//! until the waiting ones fill the whole bound; only then does the router wait (lossless
//! backpressure) or, with `dropWhenFull`, drop. An occurrence frees its room when a lane takes it
//! into a request: what is in flight is bounded apart, by `concurrency × batch.maxEvents`.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::Delivery;

/// One waiting occurrence and the room it holds in the queue.
pub struct Queued {
    delivery: Delivery,
    _room: OwnedSemaphorePermit,
}

impl Queued {
    /// Taken into a request: its room in the queue is free again.
    pub fn take(self) -> Delivery {
        self.delivery
    }

    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }
}

/// The sending side. Cheap to clone.
#[derive(Clone)]
pub struct QueueSender {
    tx: mpsc::UnboundedSender<Queued>,
    room: Arc<Semaphore>,
}

/// Why an occurrence was not queued; it is handed back.
pub enum Refused {
    /// `try_send` and no room.
    Full(Delivery),
    /// The receiver's worker is gone (aborted).
    Closed(Delivery),
}

/// A queue for `capacity` waiting occurrences.
pub fn queue(capacity: usize) -> (QueueSender, mpsc::UnboundedReceiver<Queued>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(capacity.max(1)));
    (QueueSender { tx, room }, rx)
}

impl QueueSender {
    /// Waits for room, then queues.
    pub async fn send(&self, delivery: Delivery) -> Result<(), Refused> {
        let Ok(room) = self.room.clone().acquire_owned().await else {
            return Err(Refused::Closed(delivery));
        };
        self.put(delivery, room)
    }

    /// Queues if there is room now.
    pub fn try_send(&self, delivery: Delivery) -> Result<(), Refused> {
        match self.room.clone().try_acquire_owned() {
            Ok(room) => self.put(delivery, room),
            Err(_) => Err(Refused::Full(delivery)),
        }
    }

    fn put(&self, delivery: Delivery, room: OwnedSemaphorePermit) -> Result<(), Refused> {
        self.tx
            .send(Queued {
                delivery,
                _room: room,
            })
            .map_err(|mpsc::error::SendError(q)| Refused::Closed(q.delivery))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Occurrence};
    use crate::progress::Tracker;

    fn delivery(tracker: &Tracker, uid: &str) -> Delivery {
        let event: Event =
            serde_json::from_value(serde_json::json!({"metadata": {"uid": uid}, "count": 1}))
                .unwrap();
        let ticket = tracker.begin(None);
        let d = Delivery {
            occ: Arc::new(Occurrence::new(event)),
            ack: ticket.ack(),
        };
        ticket.release();
        d
    }

    #[tokio::test]
    async fn room_is_freed_when_an_occurrence_is_taken_not_when_it_is_received() {
        let tracker = Tracker::new(None);
        let (tx, mut rx) = queue(2);
        for uid in ["a", "b"] {
            assert!(tx.try_send(delivery(&tracker, uid)).is_ok());
        }
        assert!(matches!(
            tx.try_send(delivery(&tracker, "c")),
            Err(Refused::Full(_))
        ));
        // Received by a lane but still waiting there: no room yet.
        let a = rx.recv().await.unwrap();
        assert!(matches!(
            tx.try_send(delivery(&tracker, "c")),
            Err(Refused::Full(_))
        ));
        drop(a.take());
        assert!(tx.try_send(delivery(&tracker, "c")).is_ok());
        // The worker gone: refused, the occurrence handed back.
        drop(rx);
        assert!(matches!(
            tx.send(delivery(&tracker, "d")).await,
            Err(Refused::Closed(_))
        ));
    }
}
