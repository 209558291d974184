//! A monitoring probe: publishes observations as the `event-source` identity.

use anyhow::Result;
use contracts::bus::Bus;
use contracts::services::EventSource;
use contracts::{Event, Timestamp};
use serde_json::{json, Value};

pub struct Probe {
    bus: Bus<EventSource>,
}

impl Probe {
    pub fn new(bus: Bus<EventSource>) -> Self {
        Self { bus }
    }

    /// Publishes one event; returns it.
    pub async fn emit(&self, event_type: &str, severity: &str, data: Value) -> Result<Event> {
        let event: Event = contracts::decode_value(json!({
            "version": "1.0",
            "event_id": uuid::Uuid::new_v4(),
            "timestamp": Timestamp::now(),
            "source": "orion-probe",
            "event_type": event_type,
            "severity": severity,
            "data": data,
        }))?;
        self.bus.publish(&event).await?;
        Ok(event)
    }

    /// Publishes the same event again (a flapping or duplicating producer).
    pub async fn repeat(&self, event: &Event) -> Result<()> {
        self.bus.publish(event).await?;
        Ok(())
    }
}
