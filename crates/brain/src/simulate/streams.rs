//! Reading the recorded history for a simulation: ordered readers only (unacknowledged,
//! nothing taken from brain's durable consumers, nothing published).

use std::time::Duration;

use contracts::bus::{Bus, BusError, BusErrorKind, ReadFrom};
use contracts::services::Brain;
use contracts::{Action, Contract, Decision, Incident, Outcome, Reads};
use time::OffsetDateTime;

use super::history::{History, Recorded};

/// How long a read may wait for the next message of a stream it knows is not finished.
const NEXT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// Which incident versions to replay.
#[derive(Debug, Clone, Copy)]
pub enum Window {
    /// Everything the stream holds.
    All,
    /// What the server stored at or after this time (`--since`).
    Since(OffsetDateTime),
    /// From this sequence of ORION_INCIDENTS on (`--from-seq`).
    FromSequence(u64),
}

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading {subject}: {source}")]
    Bus {
        subject: &'static str,
        #[source]
        source: BusError,
    },
    #[error(
        "reading {subject}: no message within {NEXT_MESSAGE_TIMEOUT:?} while more were pending"
    )]
    Stalled { subject: &'static str },
}

impl ReadError {
    /// The bus error's kind (for the exit code), if it came from the bus.
    pub fn bus_error(&self) -> Option<&BusError> {
        match self {
            ReadError::Bus { source, .. } => Some(source),
            ReadError::Stalled { .. } => None,
        }
    }
}

/// The history read, and how many stored messages did not decode (left out).
pub struct Read {
    pub history: History,
    pub skipped: usize,
}

/// Reads the incident versions of `window`, and the decisions, actions and outcomes stored
/// from the time the first of them was stored (what brain answered them with, and what
/// followed).
pub async fn read_history(bus: &Bus<Brain>, window: Window) -> Result<Read, ReadError> {
    let from = match window {
        Window::All => ReadFrom::Start,
        Window::Since(at) => ReadFrom::Time(at),
        Window::FromSequence(sequence) => ReadFrom::Sequence(sequence),
    };
    let mut skipped = 0;
    let (incidents, first_stored) = read_all::<Incident>(bus, from, &mut skipped).await?;
    let alongside = match (window, first_stored) {
        (_, None) => None,
        (Window::All, Some(_)) => Some(ReadFrom::Start),
        (_, Some(at)) => Some(ReadFrom::Time(at)),
    };
    let mut history = History {
        incidents,
        ..History::default()
    };
    if let Some(from) = alongside {
        history.decisions = read_all::<Decision>(bus, from, &mut skipped).await?.0;
        history.actions = read_all::<Action>(bus, from, &mut skipped).await?.0;
        history.outcomes = read_all::<Outcome>(bus, from, &mut skipped).await?.0;
    }
    Ok(Read { history, skipped })
}

/// Every message of `T` from `from` to the end the stream had when the reader opened, and
/// when the first was stored.
async fn read_all<T: Contract>(
    bus: &Bus<Brain>,
    from: ReadFrom,
    skipped: &mut usize,
) -> Result<(Vec<Recorded<T>>, Option<OffsetDateTime>), ReadError>
where
    Brain: Reads<T>,
{
    let subject = T::INFO.subject;
    let failed = |source| ReadError::Bus { subject, source };
    let mut reader = bus.read::<T>(from).await.map_err(failed)?;
    let mut messages = Vec::new();
    let mut first_stored = None;
    for _ in 0..reader.pending_at_open() {
        let next = tokio::time::timeout(NEXT_MESSAGE_TIMEOUT, reader.next())
            .await
            .map_err(|_| ReadError::Stalled { subject })?;
        match next {
            None => break,
            Some(Ok((message, stored))) => {
                first_stored.get_or_insert(stored.stored_at);
                messages.push(Recorded {
                    sequence: stored.stream_sequence,
                    message,
                });
            }
            // A stored message that breaks its contract cannot be replayed; the rest can.
            Some(Err(e)) if e.kind() == BusErrorKind::Invalid => {
                tracing::warn!(%subject, error = %e, "a stored message does not decode; left out");
                *skipped += 1;
            }
            Some(Err(e)) => return Err(failed(e)),
        }
    }
    Ok((messages, first_stored))
}
