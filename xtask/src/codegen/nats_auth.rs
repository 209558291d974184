//! `deploy/nats/authorization.conf`: one NATS user per service identity, with publish and
//! subscribe allow lists derived from the inventory. Passwords are never in the repository:
//! each is read by nats-server from an environment variable (`ORION_NATS_PASSWORD_<SERVICE>`).

use std::collections::BTreeSet;
use std::fmt::Write;

use super::header_lines;
use crate::inventory::ContractSet;
use crate::naming::screaming_snake;

/// The environment variable holding a service's NATS password.
pub fn password_env(service: &str) -> String {
    format!("ORION_NATS_PASSWORD_{}", screaming_snake(service))
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
        "    # Operators and provisioning (`cargo xtask up`): full access."
    )
    .unwrap();
    writeln!(
        out,
        "    {{ user: \"admin\", password: ${} }}",
        password_env("admin")
    )
    .unwrap();
    for name in set.inventory.services.keys() {
        let (publish, subscribe) = permissions(set, name);
        writeln!(out, "    {{").unwrap();
        writeln!(out, "      user: {name:?}").unwrap();
        writeln!(out, "      password: ${}", password_env(name)).unwrap();
        writeln!(out, "      permissions: {{").unwrap();
        writeln!(out, "        publish: {{ allow: {} }}", list(&publish)).unwrap();
        writeln!(out, "        subscribe: {{ allow: {} }}", list(&subscribe)).unwrap();
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

/// What one service may publish and subscribe to.
fn permissions(set: &ContractSet, service: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut publish = BTreeSet::new();
    let mut subscribe = BTreeSet::new();
    // Replies (JetStream acks, requests) and NATS micro-service discovery.
    subscribe.insert("_INBOX.>".to_string());
    subscribe.insert("$SRV.>".to_string());
    publish.insert("_INBOX.>".to_string());
    publish.insert("$JS.API.INFO".to_string());
    // Flow-control replies of push consumers (key-value watches).
    publish.insert("$JS.FC.>".to_string());

    let mut streams = BTreeSet::new();
    for contract in &set.inventory.contracts {
        if contract.producers.iter().any(|p| p == service) {
            publish.insert(contract.subject.clone());
            streams.insert(contract.stream.clone());
        }
        if contract.consumers.iter().any(|c| c == service) {
            subscribe.insert(contract.subject.clone());
            streams.insert(contract.stream.clone());
        }
    }
    for stream in streams {
        // Provision the stream it touches, and create, read and acknowledge its own consumers.
        for api in [
            format!("$JS.API.STREAM.CREATE.{stream}"),
            format!("$JS.API.STREAM.UPDATE.{stream}"),
            format!("$JS.API.STREAM.INFO.{stream}"),
            format!("$JS.API.STREAM.MSG.GET.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
            format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>"),
            format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
            format!("$JS.API.CONSUMER.INFO.{stream}.>"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.>"),
            format!("$JS.ACK.{stream}.>"),
        ] {
            publish.insert(api);
        }
    }
    for (bucket, spec) in &set.inventory.key_value {
        let stream = format!("KV_{bucket}");
        let writes = spec.writers.iter().any(|w| w == service);
        if writes {
            publish.insert(format!("$KV.{bucket}.>"));
            publish.insert(format!("$JS.API.STREAM.CREATE.{stream}"));
            publish.insert(format!("$JS.API.STREAM.UPDATE.{stream}"));
            // Removing deleted keys' markers for good (guardian does).
            publish.insert(format!("$JS.API.STREAM.PURGE.{stream}"));
        }
        if writes || spec.readers.iter().any(|r| r == service) {
            reader_permissions(&stream, &mut publish);
        }
    }
    for (bucket, spec) in &set.inventory.object_stores {
        let stream = format!("OBJ_{bucket}");
        let writes = spec.writers.iter().any(|w| w == service);
        if writes {
            publish.insert(format!("$O.{bucket}.>"));
            publish.insert(format!("$JS.API.STREAM.CREATE.{stream}"));
            publish.insert(format!("$JS.API.STREAM.UPDATE.{stream}"));
            publish.insert(format!("$JS.API.STREAM.PURGE.{stream}"));
        }
        if writes || spec.readers.iter().any(|r| r == service) {
            reader_permissions(&stream, &mut publish);
        }
    }
    // NATS micro-service status endpoints of this service (see contracts::bus::stats).
    subscribe.insert(format!("{MICRO_PREFIX}.{service}.>"));
    (publish, subscribe)
}

/// The subject namespace of the services' NATS micro status endpoints.
pub const MICRO_PREFIX: &str = "orion.micro";

/// Reading a bucket: look-ups, and the ephemeral ordered consumers behind watch and get.
fn reader_permissions(stream: &str, publish: &mut BTreeSet<String>) {
    for api in [
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.STREAM.MSG.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}.>"),
        format!("$JS.API.DIRECT.GET.{stream}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
        format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
        format!("$JS.API.CONSUMER.INFO.{stream}.>"),
    ] {
        publish.insert(api);
    }
}
