//! Every Prometheus metric of the platform, in one table ([`ALL`]), and the one way to record
//! them ([`Metric`]).
//!
//! Services never call the `metrics` macros themselves: a name, its labels and its help live
//! here once, `docs/OPERATIONS.md` lists exactly this table (a test compares them), and the
//! bootstrap describes every entry to the exporter when `--metrics-listen` is set
//! (`runtime::telemetry`). Without an exporter installed recording costs next to nothing (the
//! `metrics` facade's no-op recorder), so libraries and tests record unconditionally.
//!
//! Labels are bounded by construction: consumer names, subjects, contract enum values,
//! incident types from the rules file. Never put an id or free text in a label.

/// What a metric measures over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (`_total`).
    Counter,
    /// A value now (`1`/`0` states, counts of pending things).
    Gauge,
    /// A distribution (`_seconds`, `_ms`), exported with buckets ([`buckets_of`]).
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric: its exposition name, kind, label names (in the order callers give values) and
/// help text, and which part of the platform records it.
#[derive(Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
    pub recorded_by: &'static str,
}

impl Metric {
    /// Adds `by` to a counter.
    pub fn add(&'static self, values: &[&str], by: u64) {
        debug_assert_eq!(self.kind, Kind::Counter, "{} is not a counter", self.name);
        ::metrics::counter!(self.name, &self.label_pairs(values)).increment(by);
    }

    /// Adds 1 to a counter.
    pub fn increment(&'static self, values: &[&str]) {
        self.add(values, 1);
    }

    /// Sets a gauge.
    pub fn set(&'static self, values: &[&str], value: f64) {
        debug_assert_eq!(self.kind, Kind::Gauge, "{} is not a gauge", self.name);
        ::metrics::gauge!(self.name, &self.label_pairs(values)).set(value);
    }

    /// Records one observation of a histogram, in the unit its name ends with.
    pub fn observe(&'static self, values: &[&str], value: f64) {
        debug_assert_eq!(
            self.kind,
            Kind::Histogram,
            "{} is not a histogram",
            self.name
        );
        ::metrics::histogram!(self.name, &self.label_pairs(values)).record(value);
    }

    /// Records a duration in seconds or milliseconds, whichever the name says.
    pub fn observe_duration(&'static self, values: &[&str], took: std::time::Duration) {
        let value = if self.name.ends_with("_ms") {
            took.as_secs_f64() * 1000.0
        } else {
            took.as_secs_f64()
        };
        self.observe(values, value);
    }

    fn label_pairs(&self, values: &[&str]) -> Vec<(&'static str, String)> {
        debug_assert_eq!(
            values.len(),
            self.labels.len(),
            "{} takes the labels {:?}",
            self.name,
            self.labels
        );
        self.labels
            .iter()
            .zip(values)
            .map(|(name, value)| (*name, (*value).to_string()))
            .collect()
    }
}

/// Bucket bounds of a histogram: seconds for `_seconds` (1 ms to 30 s), milliseconds for `_ms`.
pub fn buckets_of(metric: &Metric) -> &'static [f64] {
    const SECONDS: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    const MILLISECONDS: &[f64] = &[
        5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
        60000.0, 120000.0,
    ];
    if metric.name.ends_with("_ms") {
        MILLISECONDS
    } else {
        SECONDS
    }
}

const BUS: &str = "every service (contracts::bus)";

pub static CONSUMER_RECEIVED: Metric = Metric {
    name: "orion_consumer_received_total",
    kind: Kind::Counter,
    labels: &["consumer"],
    help: "Valid deliveries handed to the service, by durable consumer.",
    recorded_by: BUS,
};
pub static CONSUMER_REDELIVERED: Metric = Metric {
    name: "orion_consumer_redelivered_total",
    kind: Kind::Counter,
    labels: &["consumer"],
    help: "Deliveries that were not a message's first (a nak, a lost ack, an ack wait passed).",
    recorded_by: BUS,
};
pub static CONSUMER_ACKED: Metric = Metric {
    name: "orion_consumer_acked_total",
    kind: Kind::Counter,
    labels: &["consumer"],
    help: "Messages handled and acknowledged.",
    recorded_by: BUS,
};
pub static CONSUMER_NAKED: Metric = Metric {
    name: "orion_consumer_naked_total",
    kind: Kind::Counter,
    labels: &["consumer"],
    help: "Messages handed back for redelivery (a handler error).",
    recorded_by: BUS,
};
pub static CONSUMER_TERMINATED: Metric = Metric {
    name: "orion_consumer_terminated_total",
    kind: Kind::Counter,
    labels: &["consumer"],
    help: "Messages the handler gave up on.",
    recorded_by: BUS,
};
pub static CONSUMER_PANICKED: Metric = Metric {
    name: "orion_consumer_panicked_total",
    kind: Kind::Counter,
    labels: &["consumer"],
    help: "Deliveries whose handler panicked (caught; the message is handed back).",
    recorded_by: BUS,
};
pub static DEAD_LETTERED: Metric = Metric {
    name: "orion_dead_lettered_total",
    kind: Kind::Counter,
    labels: &["consumer", "reason"],
    help: "Messages sent to platform.dead_letter.v1, by consumer and reason code.",
    recorded_by: BUS,
};
pub static CONSUMER_HANDLING: Metric = Metric {
    name: "orion_consumer_handling_seconds",
    kind: Kind::Histogram,
    labels: &["consumer"],
    help: "Time from a delivery's arrival to its acknowledgement.",
    recorded_by: BUS,
};
pub static PUBLISH_LATENCY: Metric = Metric {
    name: "orion_publish_seconds",
    kind: Kind::Histogram,
    labels: &["subject"],
    help:
        "Time from handing a message to the server to JetStream's confirmation that it is stored.",
    recorded_by: BUS,
};
pub static PUBLISH_FAILURES: Metric = Metric {
    name: "orion_publish_failures_total",
    kind: Kind::Counter,
    labels: &["subject"],
    help: "Publishes that were refused or not confirmed.",
    recorded_by: BUS,
};
pub static BUILD_INFO: Metric = Metric {
    name: "orion_build_info",
    kind: Kind::Gauge,
    labels: &["version"],
    help: "Always 1; the binary's version as a label.",
    recorded_by: "every service (bootstrap)",
};

const OPS_WORKER: &str = "ops-worker";

pub static OPS_COMMANDS: Metric = Metric {
    name: "opsd_commands_total",
    kind: Kind::Counter,
    labels: &["type", "status"],
    help: "Final receipts of ops commands, by command type and receipt status.",
    recorded_by: OPS_WORKER,
};
pub static OPS_COMMAND_DURATION: Metric = Metric {
    name: "opsd_command_duration_ms",
    kind: Kind::Histogram,
    labels: &["type"],
    help: "Time from a command's admission to its final receipt, in milliseconds.",
    recorded_by: OPS_WORKER,
};
pub static OPS_HMAC_FAILURES: Metric = Metric {
    name: "opsd_hmac_failures_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Ops commands refused because their HMAC signature did not verify.",
    recorded_by: OPS_WORKER,
};
pub static OPS_REPLAY_REFUSALS: Metric = Metric {
    name: "opsd_replay_refusals_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Ops commands refused because they were outside the replay window.",
    recorded_by: OPS_WORKER,
};

const GUARDIAN: &str = "guardian";

pub static INCIDENTS_OPENED: Metric = Metric {
    name: "orion_incidents_opened_total",
    kind: Kind::Counter,
    labels: &["incident_type"],
    help: "Incidents opened.",
    recorded_by: GUARDIAN,
};
pub static INCIDENTS_UPDATED: Metric = Metric {
    name: "orion_incidents_updated_total",
    kind: Kind::Counter,
    labels: &["incident_type"],
    help: "New versions of open incidents (grown, acknowledged).",
    recorded_by: GUARDIAN,
};
pub static INCIDENTS_RESOLVED: Metric = Metric {
    name: "orion_incidents_resolved_total",
    kind: Kind::Counter,
    labels: &["incident_type"],
    help: "Incidents resolved.",
    recorded_by: GUARDIAN,
};

const BRAIN: &str = "brain";

pub static DECISIONS: Metric = Metric {
    name: "orion_decisions_total",
    kind: Kind::Counter,
    labels: &["decision_type", "safety_class"],
    help: "Decisions published, by decision type and safety classification.",
    recorded_by: BRAIN,
};
pub static APPROVALS_REQUESTED: Metric = Metric {
    name: "orion_approvals_requested_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Approval requests published.",
    recorded_by: BRAIN,
};
pub static APPROVALS_PENDING: Metric = Metric {
    name: "orion_approvals_pending",
    kind: Kind::Gauge,
    labels: &[],
    help: "Approval requests waiting for an answer.",
    recorded_by: BRAIN,
};
pub static APPROVALS_ANSWERED: Metric = Metric {
    name: "orion_approvals_answered_total",
    kind: Kind::Counter,
    labels: &["answer"],
    help: "Signed approval decisions brain accepted, by answer.",
    recorded_by: BRAIN,
};
pub static APPROVALS_EXPIRED: Metric = Metric {
    name: "orion_approvals_expired_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Approval requests that expired unanswered.",
    recorded_by: BRAIN,
};
pub static BREAKER_OPEN: Metric = Metric {
    name: "orion_circuit_breaker_open",
    kind: Kind::Gauge,
    labels: &["action_type", "target"],
    help: "1 while brain's circuit breaker of an action type and target is open (as of its last decision for them), else 0.",
    recorded_by: BRAIN,
};
pub static INTERLOCK_ARMED: Metric = Metric {
    name: "orion_interlock_armed",
    kind: Kind::Gauge,
    labels: &[],
    help: "brain's view of ops-worker's interlock: 1 armed, 0 disarmed (or unreadable).",
    recorded_by: BRAIN,
};

pub static ACTIONS: Metric = Metric {
    name: "orion_actions_total",
    kind: Kind::Counter,
    labels: &["action_type", "outcome"],
    help: "Outcomes of the actions commander executed, by action type and outcome status.",
    recorded_by: "commander",
};

/// Every metric, in the order `docs/OPERATIONS.md` lists them.
pub static ALL: &[&Metric] = &[
    &CONSUMER_RECEIVED,
    &CONSUMER_REDELIVERED,
    &CONSUMER_ACKED,
    &CONSUMER_NAKED,
    &CONSUMER_TERMINATED,
    &CONSUMER_PANICKED,
    &DEAD_LETTERED,
    &CONSUMER_HANDLING,
    &PUBLISH_LATENCY,
    &PUBLISH_FAILURES,
    &BUILD_INFO,
    &OPS_COMMANDS,
    &OPS_COMMAND_DURATION,
    &OPS_HMAC_FAILURES,
    &OPS_REPLAY_REFUSALS,
    &INCIDENTS_OPENED,
    &INCIDENTS_UPDATED,
    &INCIDENTS_RESOLVED,
    &DECISIONS,
    &APPROVALS_REQUESTED,
    &APPROVALS_PENDING,
    &APPROVALS_ANSWERED,
    &APPROVALS_EXPIRED,
    &BREAKER_OPEN,
    &INTERLOCK_ARMED,
    &ACTIONS,
];

/// The Markdown table of [`ALL`] that `docs/OPERATIONS.md` holds between its
/// `<!-- metrics:begin -->` and `<!-- metrics:end -->` markers.
pub fn markdown_table() -> String {
    let mut table = String::from(
        "| metric | type | labels | recorded by | meaning |\n| --- | --- | --- | --- | --- |\n",
    );
    for metric in ALL {
        let labels = if metric.labels.is_empty() {
            "—".to_string()
        } else {
            metric
                .labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        table.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            metric.name,
            metric.kind.as_str(),
            labels,
            metric.recorded_by,
            metric.help
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_follow_prometheus_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for metric in ALL {
            assert!(seen.insert(metric.name), "{} is listed twice", metric.name);
            assert!(
                metric.name.starts_with("orion_") || metric.name.starts_with("opsd_"),
                "{}: platform metrics start with orion_ (titan's own with opsd_)",
                metric.name
            );
            match metric.kind {
                Kind::Counter => assert!(metric.name.ends_with("_total"), "{}", metric.name),
                Kind::Histogram => assert!(
                    metric.name.ends_with("_seconds") || metric.name.ends_with("_ms"),
                    "{}: a histogram names its unit",
                    metric.name
                ),
                Kind::Gauge => assert!(!metric.name.ends_with("_total"), "{}", metric.name),
            }
        }
    }

    #[test]
    fn the_shipped_alert_rules_name_only_metrics_that_exist() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/prometheus/alerts.yml"
        );
        let rules = std::fs::read_to_string(path).expect("deploy/prometheus/alerts.yml");
        let named: std::collections::BTreeSet<&str> = rules
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("orion_") || word.starts_with("opsd_"))
            .collect();
        assert!(!named.is_empty());
        for word in named {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word);
            assert!(
                ALL.iter().any(|m| m.name == word || m.name == base),
                "alerts.yml names `{word}`, which contracts::metrics::ALL does not declare"
            );
        }
    }

    #[test]
    fn the_operations_guide_lists_exactly_these_metrics() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/OPERATIONS.md");
        let guide = std::fs::read_to_string(path).expect("docs/OPERATIONS.md");
        let begin = "<!-- metrics:begin -->\n";
        let start = guide.find(begin).expect("the metrics:begin marker") + begin.len();
        let end = guide
            .find("<!-- metrics:end -->")
            .expect("the metrics:end marker");
        let expected = markdown_table();
        assert!(
            guide[start..end] == expected,
            "docs/OPERATIONS.md's metric table differs from contracts::metrics::ALL; put this \
             between its markers:\n{expected}"
        );
    }
}
