//! Messages as read back from the streams: where each one is stored, the raw JSON that was
//! published, and the decoded, validated [`Message`].
//!
//! Pure: no I/O here (see [`crate::streams`] for reading), so the audit logic built on top of it
//! is unit-testable with hand-made records. How a record is shown (lines, the `--json`
//! envelope) is [`crate::render`]'s, which reads records; this module imports nothing of it.

use contracts::bus::Trace;
use contracts::Message;
use serde_json::Value;
use time::OffsetDateTime;

/// One message as stored in a JetStream stream, before decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    /// The stream that stores it.
    pub stream: String,
    /// Its sequence in that stream.
    pub sequence: u64,
    /// The subject it was published on.
    pub subject: String,
    /// When the server stored it.
    pub stored_at: OffsetDateTime,
    /// The payload exactly as published.
    pub payload: Vec<u8>,
    /// The `Orion-Signature` header, when the message carried one.
    pub signature: Option<String>,
    /// Its `traceparent` header, when it carried a valid one.
    pub trace: Option<Trace>,
}

/// A stored message that decoded (parsed, validated against its contract, deserialized).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub stream: String,
    pub sequence: u64,
    pub subject: String,
    pub stored_at: OffsetDateTime,
    /// The payload as JSON, exactly as published (what `--json` prints).
    pub raw: Value,
    pub message: Message,
    /// The `Orion-Signature` header, when the message carried one.
    pub signature: Option<String>,
    /// Its `traceparent` header, when it carried a valid one.
    pub trace: Option<Trace>,
}

/// A stored message that did not decode: skipped, and counted in the output.
#[derive(Debug, Clone, PartialEq)]
pub struct Undecodable {
    pub stream: String,
    pub sequence: u64,
    pub subject: String,
    pub error: String,
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} #{} on `{}` does not decode: {}",
            self.stream, self.sequence, self.subject, self.error
        )
    }
}

/// What a read produced: the messages that decoded, in the order given, and those that did not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub records: Vec<Record>,
    pub skipped: Vec<Undecodable>,
}

impl Decoded {
    /// Appends another read.
    pub fn extend(&mut self, other: Decoded) {
        self.records.extend(other.records);
        self.skipped.extend(other.skipped);
    }
}

impl Record {
    /// Decodes `raw` with `Message::decode` (the contract of its subject).
    pub fn decode(raw: RawRecord) -> Result<Self, Undecodable> {
        let failed = |error: String| Undecodable {
            stream: raw.stream.clone(),
            sequence: raw.sequence,
            subject: raw.subject.clone(),
            error,
        };
        let message =
            Message::decode(&raw.subject, &raw.payload).map_err(|e| failed(e.to_string()))?;
        let value: Value =
            serde_json::from_slice(&raw.payload).map_err(|e| failed(e.to_string()))?;
        Ok(Self {
            stream: raw.stream,
            sequence: raw.sequence,
            subject: raw.subject,
            stored_at: raw.stored_at,
            raw: value,
            message,
            signature: raw.signature,
            trace: raw.trace,
        })
    }

    /// The message's own time (`timestamp`, or `ts` for the ops pair).
    pub fn time(&self) -> OffsetDateTime {
        message_time(&self.message)
    }

    /// The contract name (`incident`, `ops_receipt`, …).
    pub fn contract(&self) -> &'static str {
        self.message.info().name
    }
}

/// Decodes every record; the ones that fail are kept aside with their error.
pub fn decode_all(raw: impl IntoIterator<Item = RawRecord>) -> Decoded {
    let mut decoded = Decoded::default();
    for raw in raw {
        match Record::decode(raw) {
            Ok(record) => decoded.records.push(record),
            Err(skipped) => decoded.skipped.push(skipped),
        }
    }
    decoded
}

/// The time a message carries: `timestamp`, or `ts` for ops commands and receipts.
pub fn message_time(message: &Message) -> OffsetDateTime {
    let timestamp = match message {
        Message::Event(m) => m.timestamp,
        Message::Incident(m) => m.timestamp,
        Message::Decision(m) => m.timestamp,
        Message::Action(m) => m.timestamp,
        Message::ApprovalRequest(m) => m.timestamp,
        Message::ApprovalDecision(m) => m.timestamp,
        Message::Approval(m) => m.timestamp,
        Message::Outcome(m) => m.timestamp,
        Message::Notification(m) => m.timestamp,
        Message::IncidentAcknowledgement(m) => m.timestamp,
        Message::OpsCommand(m) => m.ts,
        Message::OpsReceipt(m) => m.ts,
        Message::DeadLetter(m) => m.timestamp,
        Message::Silence(m) => m.timestamp,
    };
    timestamp.as_offset_date_time()
}

/// Sorts records into time order: the message's own time, then the time the server stored it,
/// then stream and sequence (so equal times keep a stable, publish-order result).
pub fn sort_by_time(records: &mut [&Record]) {
    records.sort_by(|a, b| {
        (a.time(), a.stored_at, &a.stream, a.sequence).cmp(&(
            b.time(),
            b.stored_at,
            &b.stream,
            b.sequence,
        ))
    });
}
