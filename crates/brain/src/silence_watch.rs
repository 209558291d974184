//! brain's live view of the silences: an ordered reader on `orion.silence.v1` (stream
//! `ORION_SILENCES`) from the start of the stream, followed live, each message judged by
//! [`SilenceBook::apply`] against the policy's administrators.
//!
//! Why an ordered reader from the start and not a durable consumer with state in
//! `brain_state`: the stream *is* the state. Every silence that can still apply is in it (its
//! retention, 30 days, is far beyond the longest window, 7 days), so a restarted brain — or a
//! second instance — rebuilds exactly the same book by reading it again, with nothing to keep
//! in step, no acknowledgement to lose and no state to migrate; and the stream holds only
//! silences, so the replay is short.
//!
//! Fail safe on start: [`SilenceWatch::follow`] returns only once it has read every message the
//! stream held when it opened, so brain never decides an incident before it knows the
//! silences stored before it started; if the stream cannot be read, brain does not start. If
//! the reader fails later, the book brain has stays in force while the task reads the stream
//! again from its start (with backoff) and replaces the book once it has caught up.
//!
//! A silence stored while brain runs applies to the incidents brain takes up after the reader
//! delivered it (normally milliseconds after approval-cli published it). A refused silence
//! (unsigned, forged, unknown signer, longer than 7 days, …) is logged as a warning each time
//! the stream is read and kept in [`SilenceBook::refused`]; it never applies.

use std::time::Duration;

use contracts::bus::{Bus, BusError, ReadFrom, ReadMessage, Reader};
use contracts::services;
use contracts::signing::{Verifier, SIGNATURE_HEADER};
use contracts::{Silence, Timestamp};
use tokio::sync::watch;

use crate::silences::{Applied, SilenceBook};

/// How long the start-up read may wait for the next message of the stream it knows is there.
const STALL: Duration = Duration::from_secs(15);

/// Why the silences could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SilenceWatchError {
    #[error("reading the silences (orion.silence.v1 in ORION_SILENCES): {0}")]
    Read(#[source] BusError),
    #[error("reading the silences: no message for {0:?} while {1} more were pending")]
    Stalled(Duration, u64),
    #[error("reading the silences: the reader ended before the end of the stream")]
    Ended,
}

/// The silences as brain knows them, kept current by a reader task; dropping it stops the task.
pub struct SilenceWatch {
    receiver: watch::Receiver<SilenceBook>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SilenceWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SilenceWatch {
    /// A fixed book (tests, benchmarks).
    pub fn fixed(book: SilenceBook) -> Self {
        let (sender, receiver) = watch::channel(book);
        let task = tokio::spawn(async move {
            // Keep the sender alive as long as the handle.
            sender.closed().await;
        });
        Self { receiver, task }
    }

    /// Reads the stream to its end, then follows it. `keyring`: the policy's administrators.
    pub async fn follow(
        bus: Bus<services::Brain>,
        keyring: Verifier,
    ) -> Result<Self, SilenceWatchError> {
        let (reader, book) = catch_up(&bus, &keyring).await?;
        tracing::info!(
            silences = book.silences().count(),
            refused = book.refused().count(),
            read_to = book.read_to,
            "silences read from ORION_SILENCES; following it"
        );
        let (sender, receiver) = watch::channel(book);
        let task = tokio::spawn(follow_loop(bus, keyring, reader, sender));
        Ok(Self { receiver, task })
    }

    /// The book now.
    pub fn current(&self) -> SilenceBook {
        self.receiver.borrow().clone()
    }

    /// `f` of the book now, without copying it (brain decides every incident with it).
    pub fn with<R>(&self, f: impl FnOnce(&SilenceBook) -> R) -> R {
        f(&self.receiver.borrow())
    }

    /// A receiver that sees every change (tests wait on it).
    pub fn subscribe(&self) -> watch::Receiver<SilenceBook> {
        self.receiver.clone()
    }
}

/// A fresh reader from the start of the stream, and the book of every message it held.
async fn catch_up(
    bus: &Bus<services::Brain>,
    keyring: &Verifier,
) -> Result<(Reader, SilenceBook), SilenceWatchError> {
    let mut reader = bus
        .read_raw::<Silence>(ReadFrom::Start)
        .await
        .map_err(SilenceWatchError::Read)?;
    let mut book = SilenceBook::default();
    let pending = reader.pending_at_open();
    for read in 0..pending {
        let message = match tokio::time::timeout(STALL, reader.next()).await {
            Err(_) => return Err(SilenceWatchError::Stalled(STALL, pending - read)),
            Ok(None) => return Err(SilenceWatchError::Ended),
            Ok(Some(message)) => message.map_err(SilenceWatchError::Read)?,
        };
        apply(&mut book, &message, keyring);
    }
    book.prune(Timestamp::now());
    Ok((reader, book))
}

/// Applies one stored message and says what it did.
fn apply(book: &mut SilenceBook, message: &ReadMessage, keyring: &Verifier) {
    let sequence = message.stream_sequence;
    match book.apply(
        sequence,
        &message.payload,
        message.header(SIGNATURE_HEADER),
        keyring,
    ) {
        Applied::Created(id) => {
            if let Some(s) = book.get(id) {
                tracing::info!(silence_id = %id, by = %s.created_by, ends_at = %s.ends_at, criteria = %s.criteria, reason = %s.reason, sequence, "silence");
            }
        }
        Applied::Lifted(id) => {
            if let Some(lift) = book.get(id).and_then(|s| s.lifted.as_ref()) {
                tracing::info!(silence_id = %id, by = %lift.by, reason = %lift.reason, sequence, "silence lifted");
            }
        }
        Applied::Unchanged(id) => tracing::debug!(silence_id = %id, sequence, "silence read again"),
        Applied::Refused(refusal) => tracing::warn!(
            silence_id = ?refusal.silence_id,
            sequence,
            why = %refusal.why,
            "silence refused: it never applies"
        ),
    }
}

async fn follow_loop(
    bus: Bus<services::Brain>,
    keyring: Verifier,
    mut reader: Reader,
    sender: watch::Sender<SilenceBook>,
) {
    loop {
        let why = loop {
            match reader.next().await {
                Some(Ok(message)) => sender.send_modify(|book| {
                    apply(book, &message, &keyring);
                    book.prune(Timestamp::now());
                }),
                Some(Err(e)) => break e.to_string(),
                None => break "the reader ended".to_string(),
            }
        };
        tracing::warn!(%why, "following the silences failed; the silences known stay in force while brain reads ORION_SILENCES again");
        let mut delay = Duration::from_millis(500);
        loop {
            if sender.is_closed() {
                return;
            }
            tokio::time::sleep(delay).await;
            match catch_up(&bus, &keyring).await {
                Ok((fresh, book)) => {
                    sender.send_replace(book);
                    reader = fresh;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the silences cannot be read yet; retrying");
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}
