//! Every identity's stolen credentials against everything outside its declaration, on a real
//! nats-server with the generated permissions (`deploy/nats/authorization.conf`).
//!
//! The cases are derived from the inventory's generated tables (identities, contracts, streams,
//! durable consumers, buckets), so a new contract, consumer or bucket is covered without writing
//! a test. Each refusal is observed (the server's permissions-violation error for exactly that
//! subject), never inferred from silence; a few allowed operations per identity are checked too,
//! so a server that refused everything would fail here.
//!
//! `ORION_ATTACK_AUTHORIZATION=<file>` runs the same cases against another authorization config
//! (for example the one before least privilege, to see these attacks succeed).

use std::collections::BTreeSet;

use contracts::local_server::{NatsServer, ServerOptions, ADMIN_USER};
use contracts::{
    IdentityInfo, CONTRACTS, DURABLE_CONSUMERS, IDENTITIES, KEY_VALUE_BUCKETS, OBJECT_STORES,
    STREAMS,
};
use e2e::attacker::Attacker;

/// One thing an identity tries.
#[derive(Debug, Clone)]
enum Try {
    Publish(String),
    Subscribe(String),
    /// A request that must be answered (the identity may do it).
    Answered(String),
}

impl std::fmt::Display for Try {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Publish(s) => write!(f, "publish to {s}"),
            Self::Subscribe(s) => write!(f, "subscribe to {s}"),
            Self::Answered(s) => write!(f, "request {s} (allowed)"),
        }
    }
}

fn refused_publish(subject: impl Into<String>) -> Try {
    Try::Publish(subject.into())
}

fn writes(identity: &IdentityInfo, writers: &[&str]) -> bool {
    writers.contains(&identity.name)
}

fn uses(identity: &IdentityInfo, writers: &[&str], readers: &[&str]) -> bool {
    writers.contains(&identity.name) || readers.contains(&identity.name)
}

/// Subjects the identity sees through its durables and readers.
fn visible(identity: &IdentityInfo) -> BTreeSet<&'static str> {
    identity
        .consumes
        .iter()
        .chain(identity.reads)
        .copied()
        .collect()
}

/// Messages on contract subjects: publish only what it produces; no core subscriptions.
fn message_cases(identity: &IdentityInfo, cases: &mut Vec<Try>) {
    for contract in CONTRACTS {
        let subject = contract.subject;
        if !identity.produces.contains(&subject) {
            cases.push(refused_publish(subject));
        }
        cases.push(Try::Subscribe(subject.to_string()));
    }
}

/// Replies: nobody's but its own.
fn inbox_cases(identity: &IdentityInfo, cases: &mut Vec<Try>) {
    cases.push(Try::Subscribe("_INBOX.>".into()));
    cases.push(Try::Subscribe(">".into()));
    for other in IDENTITIES.iter().filter(|o| o.name != identity.name) {
        cases.push(Try::Subscribe(format!("{}.>", other.inbox_prefix)));
    }
}

/// Streams (message streams and the streams behind buckets): nobody reshapes or destroys them.
fn stream_cases(identity: &IdentityInfo, cases: &mut Vec<Try>) {
    let seen = visible(identity);
    for stream in STREAMS {
        let name = stream.name;
        for verb in ["CREATE", "UPDATE", "DELETE", "PURGE"] {
            cases.push(refused_publish(format!("$JS.API.STREAM.{verb}.{name}")));
        }
        // The old-style, unnamed consumer create carries no filter: never for message streams.
        cases.push(refused_publish(format!("$JS.API.CONSUMER.CREATE.{name}")));
        let all_visible = stream.subjects.iter().all(|s| seen.contains(s));
        if !all_visible {
            cases.push(refused_publish(format!("$JS.API.STREAM.MSG.GET.{name}")));
            cases.push(refused_publish(format!(
                "$JS.API.CONSUMER.CREATE.{name}.attacker-reader"
            )));
        }
        for subject in stream.subjects {
            if !identity.reads.contains(subject) {
                cases.push(refused_publish(format!(
                    "$JS.API.CONSUMER.CREATE.{name}.attacker-reader.{subject}"
                )));
            }
        }
        if stream
            .subjects
            .iter()
            .any(|s| seen.contains(s) || identity.produces.contains(s))
        {
            cases.push(Try::Answered(format!("$JS.API.STREAM.INFO.{name}")));
        } else {
            cases.push(refused_publish(format!("$JS.API.STREAM.INFO.{name}")));
        }
        for listing in ["NAMES", "LIST"] {
            cases.push(refused_publish(format!(
                "$JS.API.CONSUMER.{listing}.{name}"
            )));
        }
    }
}

/// Durable consumers: only its own, and only to look up, pull and acknowledge.
fn consumer_cases(identity: &IdentityInfo, cases: &mut Vec<Try>) {
    for durable in DURABLE_CONSUMERS {
        let (stream, name, filter) = (durable.stream, durable.name, durable.filter_subject);
        for api in [
            format!("$JS.API.CONSUMER.CREATE.{stream}.{name}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.{name}.{filter}"),
            format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{name}"),
            format!("$JS.API.CONSUMER.DELETE.{stream}.{name}"),
        ] {
            cases.push(refused_publish(api));
        }
        if durable.service == identity.name {
            cases.push(Try::Answered(format!(
                "$JS.API.CONSUMER.INFO.{stream}.{name}"
            )));
        } else {
            cases.push(refused_publish(format!(
                "$JS.API.CONSUMER.INFO.{stream}.{name}"
            )));
            cases.push(refused_publish(format!(
                "$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"
            )));
            cases.push(refused_publish(format!(
                "$JS.ACK.{stream}.{name}.1.1.1.1700000000000000000.0"
            )));
        }
    }
}

/// Key-value buckets and object stores: read or write only as declared.
fn bucket_cases(identity: &IdentityInfo, cases: &mut Vec<Try>) {
    for bucket in KEY_VALUE_BUCKETS {
        let (name, stream) = (bucket.name, format!("KV_{}", bucket.name));
        if !writes(identity, bucket.writers) {
            cases.push(refused_publish(format!("$KV.{name}.attacker-key")));
        }
        if uses(identity, bucket.writers, bucket.readers) {
            cases.push(Try::Answered(format!("$JS.API.STREAM.INFO.{stream}")));
        } else {
            for api in [
                format!("$JS.API.STREAM.INFO.{stream}"),
                format!("$JS.API.DIRECT.GET.{stream}.$KV.{name}.attacker-key"),
                format!("$JS.API.STREAM.MSG.GET.{stream}"),
                format!("$JS.API.CONSUMER.CREATE.{stream}"),
            ] {
                cases.push(refused_publish(api));
            }
        }
        for verb in ["CREATE", "UPDATE", "DELETE"] {
            cases.push(refused_publish(format!("$JS.API.STREAM.{verb}.{stream}")));
        }
        if !writes(identity, bucket.writers) {
            cases.push(refused_publish(format!("$JS.API.STREAM.PURGE.{stream}")));
        }
    }
    for store in OBJECT_STORES {
        let (name, stream) = (store.name, format!("OBJ_{}", store.name));
        if !writes(identity, store.writers) {
            cases.push(refused_publish(format!("$O.{name}.C.attacker-chunk")));
            cases.push(refused_publish(format!("$JS.API.STREAM.PURGE.{stream}")));
        }
        if uses(identity, store.writers, store.readers) {
            cases.push(Try::Answered(format!("$JS.API.STREAM.INFO.{stream}")));
        } else {
            for api in [
                format!("$JS.API.STREAM.INFO.{stream}"),
                format!("$JS.API.DIRECT.GET.{stream}.$O.{name}.M.attacker"),
                format!("$JS.API.CONSUMER.CREATE.{stream}"),
            ] {
                cases.push(refused_publish(api));
            }
        }
        for verb in ["CREATE", "UPDATE", "DELETE"] {
            cases.push(refused_publish(format!("$JS.API.STREAM.{verb}.{stream}")));
        }
    }
}

/// Server-wide and other identities' administrative subjects.
fn global_cases(identity: &IdentityInfo, cases: &mut Vec<Try>) {
    for api in [
        "$JS.API.INFO",
        "$JS.API.STREAM.NAMES",
        "$JS.API.STREAM.LIST",
        "$JS.API.META.LEADER.STEPDOWN",
        "$JS.API.SERVER.REMOVE",
        "$SYS.REQ.SERVER.PING",
        "$SRV.PING",
    ] {
        cases.push(refused_publish(api));
    }
    for other in IDENTITIES.iter().filter(|o| o.name != identity.name) {
        cases.push(Try::Subscribe(format!("orion.micro.{}.>", other.name)));
        cases.push(Try::Subscribe(format!("$SRV.PING.{}", other.name)));
    }
}

fn cases_for(identity: &IdentityInfo) -> Vec<Try> {
    let mut cases = Vec::new();
    message_cases(identity, &mut cases);
    inbox_cases(identity, &mut cases);
    stream_cases(identity, &mut cases);
    consumer_cases(identity, &mut cases);
    bucket_cases(identity, &mut cases);
    global_cases(identity, &mut cases);
    cases
}

/// Runs every case for one identity; returns the ones that did not hold.
async fn attack(server: &NatsServer, identity: &IdentityInfo) -> (usize, Vec<String>) {
    let attacker = Attacker::connect(server, identity.name, identity.inbox_prefix)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let cases = cases_for(identity);
    let mut broken = Vec::new();
    for case in &cases {
        let held = match case {
            Try::Publish(subject) => attacker
                .publish_refused(subject, b"{}".to_vec())
                .await
                .unwrap_or(false),
            Try::Subscribe(subject) => attacker
                .subscribe_refused(subject)
                .await
                .map(|(refused, _)| refused)
                .unwrap_or(false),
            Try::Answered(subject) => attacker.request(subject, Vec::new()).await.is_ok(),
        };
        if !held {
            broken.push(match case {
                Try::Answered(_) => format!("{}: {case} was not answered", identity.name),
                _ => format!("{}: {case} was NOT refused", identity.name),
            });
        }
    }
    (cases.len(), broken)
}

fn server() -> NatsServer {
    let authorization = std::env::var("ORION_ATTACK_AUTHORIZATION")
        .ok()
        .map(|path| std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")));
    NatsServer::start_with(ServerOptions {
        auth: true,
        authorization,
        ..Default::default()
    })
    .expect("start nats-server (`cargo xtask test` installs it)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_identity_is_refused_everything_outside_its_declaration() {
    let server = server();
    let admin = async_nats::ConnectOptions::new()
        .user_and_password(
            ADMIN_USER.into(),
            server.password(ADMIN_USER).unwrap().into(),
        )
        .connect(server.url())
        .await
        .unwrap();
    contracts::bus::provision_all(&async_nats::jetstream::new(admin), 1)
        .await
        .expect("provision as the admin");

    let runs = futures::future::join_all(IDENTITIES.iter().map(|i| attack(&server, i))).await;
    let checked: usize = runs.iter().map(|(n, _)| n).sum();
    let broken: Vec<String> = runs.into_iter().flat_map(|(_, b)| b).collect();
    assert!(
        broken.is_empty(),
        "{} of {checked} cases did not hold:\n{}",
        broken.len(),
        broken.join("\n")
    );
    assert!(
        checked > 100 * IDENTITIES.len(),
        "only {checked} cases: the generator lost some"
    );
    eprintln!("{checked} cases held for {} identities", IDENTITIES.len());
}
