//! A hostile participant: a plain NATS client (not our bus) logged in with one identity's stolen
//! credentials, that tries things and reports whether the server refused them.
//!
//! The server answers a refused publish or subscription with `-ERR 'Permissions Violation for
//! Publish to "<subject>"'` (or `Subscription to`); the attacker waits for exactly that error,
//! with a bound, so a refusal is observed, never assumed from silence.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use contracts::local_server::NatsServer;
use tokio::sync::Notify;

/// How long a refusal may take to come back from the server.
const REFUSAL_WAIT: Duration = Duration::from_secs(3);
/// How long an allowed request may take to be answered.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// Server errors seen on the connection, for matching refusals.
#[derive(Clone, Default)]
struct ErrorLog {
    inner: Arc<(Mutex<Vec<String>>, Notify)>,
}

impl ErrorLog {
    fn push(&self, text: String) {
        self.inner.0.lock().expect("error log").push(text);
        self.inner.1.notify_waiters();
    }

    fn mark(&self) -> usize {
        self.inner.0.lock().expect("error log").len()
    }

    /// Waits for an error after `mark` that contains `needle` (case-insensitive).
    async fn wait_for(&self, needle: &str, mark: usize) -> bool {
        let needle = needle.to_lowercase();
        let found = async {
            loop {
                let notified = self.inner.1.notified();
                if self.inner.0.lock().expect("error log")[mark..]
                    .iter()
                    .any(|t| t.to_lowercase().contains(&needle))
                {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(REFUSAL_WAIT, found).await.is_ok()
    }
}

/// A connection with one identity's credentials.
pub struct Attacker {
    pub identity: String,
    client: async_nats::Client,
    errors: ErrorLog,
}

impl Attacker {
    /// Logs in as `identity` with the password the server was started with. `inbox_prefix` is
    /// where the client expects replies (the identity's own, to be able to make requests).
    pub async fn connect(server: &NatsServer, identity: &str, inbox_prefix: &str) -> Result<Self> {
        let errors = ErrorLog::default();
        let log = errors.clone();
        let password = server
            .password(identity)
            .with_context(|| format!("the server has no password for `{identity}`"))?;
        let client = async_nats::ConnectOptions::new()
            .user_and_password(identity.into(), password.into())
            .custom_inbox_prefix(inbox_prefix)
            .event_callback(move |event| {
                let log = log.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        log.push(e.to_string());
                    }
                }
            })
            .connect(server.url())
            .await
            .with_context(|| format!("connecting as `{identity}`"))?;
        Ok(Self {
            identity: identity.to_string(),
            client,
            errors,
        })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Publishes to `subject` and reports whether the server refused it.
    pub async fn publish_refused(&self, subject: &str, payload: Vec<u8>) -> Result<bool> {
        let mark = self.errors.mark();
        self.client
            .publish(subject.to_string(), payload.into())
            .await
            .context("publishing")?;
        self.client.flush().await.context("flushing")?;
        Ok(self
            .errors
            .wait_for(&format!("publish to \"{subject}\""), mark)
            .await)
    }

    /// Subscribes to `subject` and reports whether the server refused it. A subscription the
    /// server accepted is returned, so a test can check what it would have received.
    pub async fn subscribe_refused(&self, subject: &str) -> Result<(bool, async_nats::Subscriber)> {
        let mark = self.errors.mark();
        let subscriber = self
            .client
            .subscribe(subject.to_string())
            .await
            .context("subscribing")?;
        self.client.flush().await.context("flushing")?;
        let refused = self
            .errors
            .wait_for(&format!("subscription to \"{subject}\""), mark)
            .await;
        Ok((refused, subscriber))
    }

    /// Sends a request the identity is allowed to make and returns the answer.
    pub async fn request(&self, subject: &str, payload: Vec<u8>) -> Result<async_nats::Message> {
        match tokio::time::timeout(
            ANSWER_WAIT,
            self.client.request(subject.to_string(), payload.into()),
        )
        .await
        {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => bail!("{} asked `{subject}`: {e}", self.identity),
            Err(_) => bail!(
                "{} asked `{subject}`: no answer in {ANSWER_WAIT:?}",
                self.identity
            ),
        }
    }
}
