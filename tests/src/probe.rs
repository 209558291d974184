//! A monitoring probe: publishes observations as the `event-source` identity.

use anyhow::{Context, Result};
use contracts::bus::Bus;
use contracts::services::EventSource;
use contracts::{Contract, Event, Timestamp};
use serde_json::{json, Value};

pub struct Probe {
    bus: Bus<EventSource>,
}

impl Probe {
    pub fn new(bus: Bus<EventSource>) -> Self {
        Self { bus }
    }

    /// The event this probe reports, stamped now (not published).
    pub fn event(
        event_id: uuid::Uuid,
        event_type: &str,
        severity: &str,
        data: Value,
    ) -> Result<Event> {
        Ok(contracts::decode_value(json!({
            "version": "1.0",
            "event_id": event_id,
            "timestamp": Timestamp::now(),
            "source": "orion-probe",
            "event_type": event_type,
            "severity": severity,
            "data": data,
        }))?)
    }

    /// Publishes one event; returns it.
    pub async fn emit(&self, event_type: &str, severity: &str, data: Value) -> Result<Event> {
        let event = Self::event(uuid::Uuid::new_v4(), event_type, severity, data)?;
        self.bus.publish(&event).await?;
        Ok(event)
    }

    /// Publishes the same event again (a flapping or duplicating producer).
    pub async fn repeat(&self, event: &Event) -> Result<()> {
        self.bus.publish(event).await?;
        Ok(())
    }

    /// Publishes a copy of `event` without its `Nats-Msg-Id`, so the stream keeps it as a
    /// message of its own — what a producer's re-send after the stream's duplicate window looks
    /// like. Only the consumers can tell it is the same event (by its id).
    pub async fn resend_without_msg_id(&self, event: &Event) -> Result<()> {
        let payload = contracts::encode(event)?;
        self.bus
            .jetstream()
            .publish(Event::INFO.subject, payload.into())
            .await
            .context("publishing the copy")?
            .await
            .context("the stream did not confirm the copy")?;
        Ok(())
    }
}
