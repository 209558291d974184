//! Stopping: SIGTERM or SIGINT, seen once and handed to the service as a future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}

/// The moment a service is asked to stop: a future that resolves once, when the shutdown
/// signal arrives. Services pass it to their run loop, which stops taking new work and
/// finishes (or, within the drain period, waits for) the work in hand.
pub struct Shutdown {
    fired: tokio::sync::watch::Receiver<bool>,
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

/// Fires a [`Shutdown`]; the bootstrap holds it.
#[derive(Clone)]
pub struct ShutdownTrigger(std::sync::Arc<tokio::sync::watch::Sender<bool>>);

impl Shutdown {
    /// A shutdown and the trigger that fires it.
    pub fn new() -> (Shutdown, ShutdownTrigger) {
        let (sender, fired) = tokio::sync::watch::channel(false);
        let shutdown = Shutdown { fired, wait: None };
        (shutdown, ShutdownTrigger(std::sync::Arc::new(sender)))
    }

    /// Whether it has fired.
    pub fn is_fired(&self) -> bool {
        *self.fired.borrow()
    }
}

impl ShutdownTrigger {
    /// Asks the service to stop (idempotent).
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// Another [`Shutdown`] that fires with this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            fired: self.0.subscribe(),
            wait: None,
        }
    }

    /// Resolves once the trigger has fired.
    pub async fn fired(&self) {
        let mut fired = self.0.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail.
        let _ = fired.wait_for(|fired| *fired).await;
    }
}

impl Future for Shutdown {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.wait.is_none() {
            let mut fired = self.fired.clone();
            self.wait = Some(Box::pin(async move {
                // A dropped trigger never fires: wait forever rather than stop by accident.
                if fired.wait_for(|fired| *fired).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }));
        }
        self.wait.as_mut().expect("set above").as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_shutdown_resolves_once_its_trigger_fires() {
        let (shutdown, trigger) = Shutdown::new();
        let other = trigger.subscribe();
        assert!(!shutdown.is_fired());
        let waiting = tokio::spawn(shutdown);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        trigger.fire();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("resolved within the bound")
            .unwrap();
        assert!(other.is_fired());
        tokio::time::timeout(std::time::Duration::from_secs(5), trigger.fired())
            .await
            .expect("fired");
    }
}
