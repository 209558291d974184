//! How many times Docker started a service's containers, from a live subscription to the
//! engine's events. A query of past events is not enough: the engine replays only its last 256
//! events, which a busy engine (the whole test suite) overwrites within seconds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures::StreamExt;
use orion_testkit::wait_for;

/// Counts the `start` events of one service's containers while it lives.
pub struct Starts {
    count: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Starts {
    /// Starts counting now (the last second included, so a start just before counts too).
    pub fn watch(docker: &Docker, service: &str) -> Self {
        Self::watch_since(
            docker,
            service,
            time::OffsetDateTime::now_utc() - time::Duration::SECOND,
        )
    }

    /// Counts the starts from `since` (to the nanosecond) on.
    pub fn watch_since(docker: &Docker, service: &str, since: time::OffsetDateTime) -> Self {
        let since = format!("{}.{:09}", since.unix_timestamp(), since.nanosecond());
        let options = EventsOptions {
            since: Some(since),
            until: None,
            filters: Some(std::collections::HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                ("event".to_string(), vec!["start".to_string()]),
                (
                    "label".to_string(),
                    vec![format!("{}={service}", super::service::SERVICE_LABEL)],
                ),
            ])),
        };
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        let mut events = docker.events(Some(options));
        let task = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                match event {
                    Ok(_) => {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => panic!("the Docker events stream failed: {e}"),
                }
            }
        });
        Self { count, task }
    }

    /// The starts seen so far.
    pub fn now(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// The count once at least `expected` starts arrived (waiting up to 15 s) and no more came
    /// for half a second: an extra start (a command run twice) shows as a larger count.
    pub async fn settled_at_least(&self, expected: usize) -> usize {
        // Not reaching `expected` is no failure here: the caller's assertion on the count says it.
        let what = format!("{expected} starts");
        let _ = wait_for(&what, Duration::from_secs(15), || self.now() >= expected).await;
        let mut last = self.now();
        loop {
            // Time itself is the condition: half a second without a new start.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.now();
            if now == last {
                return now;
            }
            last = now;
        }
    }
}

impl Drop for Starts {
    fn drop(&mut self) {
        self.task.abort();
    }
}
