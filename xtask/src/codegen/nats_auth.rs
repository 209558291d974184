//! `deploy/nats/authorization.conf`: one NATS user per service identity, granted exactly what the
//! inventory declares for it and nothing else:
//!
//! - publish: the subjects it produces;
//! - its own durable consumers: look up, pull and acknowledge (never create, update or delete:
//!   that is provisioning's job);
//! - ordered readers on the subjects it reads, through the filtered consumer-create API
//!   (`$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`, nats-server ≥ 2.9), never on a
//!   declared durable's name;
//! - key-value buckets and object stores: read, or read and write, as declared;
//! - replies only below its own inbox prefix (`_INBOX_<service>`), and responses to requests it
//!   received (micro-service status).
//!
//! Streams, buckets and consumers are created and changed by the `admin` identity only
//! (`cargo xtask provision`). Passwords are never in the repository: each is read by nats-server
//! from an environment variable (`ORION_NATS_PASSWORD_<SERVICE>`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::header_lines;
use crate::inventory::{ContractSet, DurableConsumer};
use crate::naming::screaming_snake;

/// The environment variable holding a service's NATS password.
pub fn password_env(service: &str) -> String {
    format!("ORION_NATS_PASSWORD_{}", screaming_snake(service))
}

/// The prefix of a service's reply subjects (`_INBOX_guardian`); only that identity may
/// subscribe below it, so nobody reads another's replies.
pub fn inbox_prefix(service: &str) -> String {
    format!("_INBOX_{service}")
}

/// The subject namespace of the services' NATS micro status endpoints (see contracts::bus::stats).
pub const MICRO_PREFIX: &str = "orion.micro";

/// What one identity may do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: BTreeSet<String>,
    /// Publications refused even where an allowed wildcard matches (deny wins in nats-server).
    pub deny_publish: BTreeSet<String>,
    pub subscribe: BTreeSet<String>,
}

pub fn generate(set: &ContractSet) -> String {
    let mut out = String::new();
    for line in header_lines() {
        writeln!(out, "# {line}").unwrap();
    }
    writeln!(
        out,
        "#\n# Include from a nats-server config. Each password comes from the environment variable\n\
         # named after the service; nats-server refuses to start when one is missing.\n"
    )
    .unwrap();
    writeln!(out, "authorization {{\n  users = [").unwrap();
    writeln!(
        out,
        "    # Provisioning (`cargo xtask provision`) and the operators' root credential: full access.\n\
         \x20   # Never handed to a service."
    )
    .unwrap();
    writeln!(
        out,
        "    {{ user: \"admin\", password: ${} }}",
        password_env("admin")
    )
    .unwrap();
    for name in set.inventory.services.keys() {
        let permissions = permissions(set, name);
        writeln!(out, "    {{").unwrap();
        writeln!(out, "      user: {name:?}").unwrap();
        writeln!(out, "      password: ${}", password_env(name)).unwrap();
        writeln!(out, "      permissions: {{").unwrap();
        if permissions.deny_publish.is_empty() {
            writeln!(
                out,
                "        publish: {{ allow: {} }}",
                list(&permissions.publish)
            )
            .unwrap();
        } else {
            writeln!(
                out,
                "        publish: {{ allow: {}, deny: {} }}",
                list(&permissions.publish),
                list(&permissions.deny_publish)
            )
            .unwrap();
        }
        writeln!(
            out,
            "        subscribe: {{ allow: {} }}",
            list(&permissions.subscribe)
        )
        .unwrap();
        writeln!(out, "        allow_responses: true").unwrap();
        writeln!(out, "      }}").unwrap();
        writeln!(out, "    }}").unwrap();
    }
    writeln!(out, "  ]\n}}").unwrap();
    out
}

fn list(items: &BTreeSet<String>) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// What `service` may publish and subscribe to, derived from the inventory alone.
pub fn permissions(set: &ContractSet, service: &str) -> Permissions {
    let mut p = Permissions::default();
    identity_basics(service, &mut p);
    let durables = set.inventory.durable_consumers();
    for contract in &set.inventory.contracts {
        if contract.producers.iter().any(|s| s == service) {
            p.publish.insert(contract.subject.clone());
            // Checking on start that the stream is provisioned.
            p.publish
                .insert(format!("$JS.API.STREAM.INFO.{}", contract.stream));
        }
    }
    for durable in durables.iter().filter(|d| d.service == service) {
        own_durable(durable, &mut p);
    }
    for (stream, subjects) in readable_subjects(set, service) {
        ordered_reader(set, &stream, &subjects, &durables, service, &mut p);
    }
    for stream in fully_visible_streams(set, service) {
        // Looking messages up by sequence reads any subject of the stream.
        p.publish.insert(format!("$JS.API.STREAM.MSG.GET.{stream}"));
    }
    for (bucket, spec) in &set.inventory.key_value {
        let writes = spec.writers.iter().any(|w| w == service);
        if writes || spec.readers.iter().any(|r| r == service) {
            bucket_reader(&format!("KV_{bucket}"), &mut p);
        }
        if writes {
            p.publish.insert(format!("$KV.{bucket}.>"));
            // Removing deleted keys' markers for good (guardian does).
            p.publish
                .insert(format!("$JS.API.STREAM.PURGE.KV_{bucket}"));
        }
    }
    for (store, spec) in &set.inventory.object_stores {
        let writes = spec.writers.iter().any(|w| w == service);
        if writes || spec.readers.iter().any(|r| r == service) {
            bucket_reader(&format!("OBJ_{store}"), &mut p);
        }
        if writes {
            p.publish.insert(format!("$O.{store}.>"));
            // Replacing an object purges its old chunks.
            p.publish
                .insert(format!("$JS.API.STREAM.PURGE.OBJ_{store}"));
        }
    }
    p
}

/// Replies below its own inbox prefix, and the NATS micro-service endpoints of its own name.
fn identity_basics(service: &str, p: &mut Permissions) {
    p.subscribe.insert(format!("{}.>", inbox_prefix(service)));
    for verb in ["PING", "INFO", "STATS"] {
        p.subscribe.insert(format!("$SRV.{verb}"));
    }
    p.subscribe.insert(format!("$SRV.*.{service}"));
    p.subscribe.insert(format!("$SRV.*.{service}.>"));
    p.subscribe.insert(format!("{MICRO_PREFIX}.{service}.>"));
}

/// Binding (look-up), pulling and acknowledging one of its own durables.
fn own_durable(durable: &DurableConsumer, p: &mut Permissions) {
    let (stream, name) = (&durable.stream, &durable.name);
    p.publish.insert(format!("$JS.API.STREAM.INFO.{stream}"));
    p.publish
        .insert(format!("$JS.API.CONSUMER.INFO.{stream}.{name}"));
    p.publish
        .insert(format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"));
    p.publish.insert(format!("$JS.ACK.{stream}.{name}.>"));
    // The server's word that a message's deliveries ran out with no answer (dead-lettered).
    p.subscribe.insert(format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{name}"
    ));
}

/// The subjects `service` reads with ordered readers, by stream.
fn readable_subjects(set: &ContractSet, service: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_stream: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for contract in &set.inventory.contracts {
        if contract.readers.iter().any(|r| r == service) {
            by_stream
                .entry(contract.stream.clone())
                .or_default()
                .insert(contract.subject.clone());
        }
    }
    by_stream
}

/// Streams every subject of which `service` consumes or reads.
fn fully_visible_streams(set: &ContractSet, service: &str) -> BTreeSet<String> {
    let sees = |c: &crate::inventory::ContractEntry| {
        c.consumers.iter().chain(&c.readers).any(|s| s == service)
    };
    set.inventory
        .streams
        .keys()
        .filter(|stream| {
            let mut contracts = set
                .inventory
                .contracts
                .iter()
                .filter(|c| &c.stream == *stream)
                .peekable();
            contracts.peek().is_some() && contracts.all(sees)
        })
        .cloned()
        .collect()
}

/// Ordered readers on `stream`: consumers it names itself, filtered to the subjects it may read
/// (unfiltered only when it may read every subject of the stream), never a declared durable.
fn ordered_reader(
    set: &ContractSet,
    stream: &str,
    readable: &BTreeSet<String>,
    durables: &[DurableConsumer],
    service: &str,
    p: &mut Permissions,
) {
    let all_subjects: BTreeSet<String> = set
        .inventory
        .contracts
        .iter()
        .filter(|c| c.stream == stream)
        .map(|c| c.subject.clone())
        .collect();
    p.publish.insert(format!("$JS.API.STREAM.INFO.{stream}"));
    if readable.is_superset(&all_subjects) {
        p.publish
            .insert(format!("$JS.API.CONSUMER.CREATE.{stream}.*"));
        p.publish
            .insert(format!("$JS.API.CONSUMER.CREATE.{stream}.*.>"));
    } else {
        for subject in readable {
            p.publish
                .insert(format!("$JS.API.CONSUMER.CREATE.{stream}.*.{subject}"));
        }
    }
    p.publish
        .insert(format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.*"));
    // After a reconnect an ordered reader looks its consumer up before replacing it.
    p.publish
        .insert(format!("$JS.API.CONSUMER.INFO.{stream}.*"));
    // An ordered reader replaces its consumer after a gap and deletes the old one.
    p.publish
        .insert(format!("$JS.API.CONSUMER.DELETE.{stream}.*"));
    for durable in durables.iter().filter(|d| d.stream == stream) {
        let name = &durable.name;
        p.deny_publish
            .insert(format!("$JS.API.CONSUMER.CREATE.{stream}.{name}"));
        p.deny_publish
            .insert(format!("$JS.API.CONSUMER.CREATE.{stream}.{name}.>"));
        p.deny_publish
            .insert(format!("$JS.API.CONSUMER.DELETE.{stream}.{name}"));
        if durable.service != service {
            p.deny_publish
                .insert(format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"));
            p.deny_publish
                .insert(format!("$JS.API.CONSUMER.INFO.{stream}.{name}"));
        }
    }
}

/// Reading a bucket's stream: look-ups, and the ephemeral push consumers behind watch and get.
fn bucket_reader(stream: &str, p: &mut Permissions) {
    for api in [
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.STREAM.MSG.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}.>"),
        format!("$JS.API.CONSUMER.CREATE.{stream}"),
        // A watch re-created after a reconnect names its consumer (filtered create API).
        format!("$JS.API.CONSUMER.CREATE.{stream}.*.>"),
        format!("$JS.API.CONSUMER.DELETE.{stream}.*"),
        // Flow-control replies of those push consumers.
        format!("$JS.FC.{stream}.>"),
    ] {
        p.publish.insert(api);
    }
}
