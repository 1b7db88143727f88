//! Every task of the process, and of each exporting run, spawned on one tracker so that the end
//! of the process can wait for all of them (docs/architecture.md, "How a shutdown flows").

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Every task of the process, so its last step can wait for all of them. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    /// Cancelled when the final join begins: the tasks that would otherwise run for ever (signal
    /// handler, Lease watcher, HTTP server) end on it.
    stop: CancellationToken,
}

impl Tasks {
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Cancelled when the final join begins.
    pub fn joining(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// A tracker for one exporting run (its source, pipeline and sinks): joined on its own when the
    /// run ends — a lost lease ends a run, not the process — and part of the process-wide join
    /// until then.
    pub fn scope(&self) -> Scope {
        let tracker = TaskTracker::new();
        let run = tracker.clone();
        self.tracker.spawn(async move { run.wait().await });
        Scope { tracker }
    }

    /// Stops the long-lived tasks and waits until every task spawned here, and every task of
    /// every scope, has finished.
    pub async fn join(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// The tasks of one exporting run. Dropping it closes it, so the process-wide join never waits for
/// a run that was abandoned; it still waits for that run's tasks to finish.
pub struct Scope {
    tracker: TaskTracker,
}

impl Scope {
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Waits until every task of the run has finished.
    pub async fn join(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.tracker.close();
    }
}
