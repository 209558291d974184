//! orion-testkit: helpers shared by the workspace's tests.
//!
//! What it is for: waiting, with a bound, for a condition a test cannot await directly (a
//! process became ready, a receipt was stored, a metric moved). [`wait_until`] polls a check
//! that yields a value, [`wait_for`] one that yields a `bool`; both give up with a
//! [`TimedOut`] that names what was awaited and for how long, so a test fails with a clear
//! message instead of hanging. The only polling sleep of the tests lives here.
//!
//! What it is not for: production code (services retry and back off with their own, tuned
//! logic), and it never stands in for a real NATS server or Docker engine: the tests that use
//! it talk to real ones.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The first pause between two tries; it doubles after each try up to [`MAX_INTERVAL`].
const FIRST_INTERVAL: Duration = Duration::from_millis(10);
/// The longest pause between two tries.
const MAX_INTERVAL: Duration = Duration::from_millis(200);

/// A condition did not hold within its bound.
///
/// Its `Debug` is its message, so a test that `.unwrap()`s a wait fails with the message.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{what}` did not happen within {within:?}")]
pub struct TimedOut {
    /// What was awaited, as the caller named it.
    pub what: String,
    /// The bound that passed.
    pub within: Duration,
}

impl std::fmt::Debug for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Calls `check` until it returns `Some`, and returns that value; gives up with [`TimedOut`]
/// once `within` has passed.
///
/// Between tries it sleeps a short, growing interval (10 ms, doubling up to 200 ms), never past
/// the deadline, and it checks once more at the deadline before failing. A check that does
/// something on each try (re-sends a request) does it inside `check`.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    within: Duration,
    mut check: F,
) -> Result<T, TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    let mut interval = FIRST_INTERVAL;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(TimedOut {
                what: what.to_owned(),
                within,
            });
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}

/// [`wait_until`] for a condition that needs no `await`: calls `check` until it is `true`.
pub async fn wait_for<F>(what: &str, within: Duration, mut check: F) -> Result<(), TimedOut>
where
    F: FnMut() -> bool,
{
    wait_until(what, within, || std::future::ready(check().then_some(()))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test(start_paused = true)]
    async fn returns_the_value_once_the_check_yields_one() {
        let tries = Cell::new(0);
        let started = Instant::now();
        let value = wait_until("the third try", Duration::from_secs(5), || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move { (n >= 3).then_some(n * 10) }
        })
        .await
        .unwrap();
        assert_eq!(value, 30);
        assert_eq!(tries.get(), 3);
        // 10 ms, then 20 ms between the tries.
        assert_eq!(started.elapsed(), Duration::from_millis(30));
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_naming_what_after_the_bound() {
        let tries = Cell::new(0u32);
        let started = Instant::now();
        let within = Duration::from_millis(1500);
        let err = wait_until("the impossible", within, || {
            tries.set(tries.get() + 1);
            async { None::<()> }
        })
        .await
        .unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(
            err,
            TimedOut {
                what: "the impossible".into(),
                within
            }
        );
        assert_eq!(
            err.to_string(),
            "`the impossible` did not happen within 1.5s"
        );
        assert!(elapsed >= within, "gave up after {elapsed:?}");
        // It does not sleep past the deadline.
        assert_eq!(elapsed, within);
        // 10+20+40+80+160 ms, then 200 ms steps up to 1500 ms, and a last try at the deadline.
        assert_eq!(tries.get(), 12);
    }

    #[tokio::test(start_paused = true)]
    async fn checks_once_more_at_the_deadline() {
        let started = Instant::now();
        let within = Duration::from_millis(25);
        wait_until("true at the deadline", within, || {
            let late = started.elapsed() >= within;
            async move { late.then_some(()) }
        })
        .await
        .unwrap();
        assert_eq!(started.elapsed(), within);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_takes_a_bool_condition() {
        let tries = Cell::new(0);
        wait_for("the second try", Duration::from_secs(1), || {
            tries.set(tries.get() + 1);
            tries.get() == 2
        })
        .await
        .unwrap();
        assert_eq!(tries.get(), 2);
        let err = wait_for("never", Duration::from_millis(50), || false)
            .await
            .unwrap_err();
        assert_eq!(err.what, "never");
        assert_eq!(format!("{err:?}"), "`never` did not happen within 50ms");
    }
}
