//! `docs/asyncapi.json`: an AsyncAPI 3 document of every channel, message and operation, so
//! that services in other languages can use the same contracts.

use anyhow::Result;
use serde_json::{json, Map, Value};

use super::header_lines;
use crate::contract_set_file::ContractSetFile;
use crate::inventory::ContractSet;

pub fn generate(set: &ContractSet, recorded: &ContractSetFile) -> Result<String> {
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();

    for (entry, schema) in set.contracts() {
        let channel_id = entry.subject.replace('.', "_");
        let message_id = schema.title().unwrap_or(&entry.name).to_string();
        let mut message = json!({
            "name": message_id,
            "title": message_id,
            "summary": schema.description(),
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    "Nats-Msg-Id": {
                        "type": "string",
                        "description": format!("Idempotency key: the values of {} joined with ':'", entry.idempotency_key.join(", "))
                    }
                }
            },
            "payload": {
                "schemaFormat": "application/schema+json;version=draft-2020-12",
                "schema": schema.json,
            },
            "x-orion-stream": entry.stream,
            "x-orion-owner": entry.owner,
        });
        if let Some(signature) = &entry.signature {
            message["x-orion-signature"] =
                json!({"algorithm": signature.algorithm, "carrier": signature.carrier});
        }
        if entry.deprecated.is_some() {
            message["deprecated"] = json!(true);
        }
        messages.insert(message_id.clone(), message);
        channels.insert(
            channel_id.clone(),
            json!({
                "address": entry.subject,
                "description": schema.description(),
                "messages": { message_id.clone(): { "$ref": format!("#/components/messages/{message_id}") } },
            }),
        );
        let receivers = entry.consumers.iter().chain(&entry.readers);
        let actions: [(&str, Vec<&String>); 2] = [
            ("send", entry.producers.iter().collect()),
            ("receive", receivers.collect()),
        ];
        for (action, services) in actions {
            for service in services {
                operations.insert(
                    format!("{service}.{action}.{channel_id}"),
                    json!({
                        "action": action,
                        "channel": { "$ref": format!("#/channels/{channel_id}") },
                        "messages": [{ "$ref": format!("#/channels/{channel_id}/messages/{message_id}") }],
                        "x-orion-service": service,
                    }),
                );
            }
        }
    }

    let document = json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "ORION / TITAN platform contracts",
            "version": recorded.version,
            "description": format!("{} {} Contract set sha256 {}.", header_lines()[0], header_lines()[1], recorded.sha256),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:4222",
                "protocol": "nats",
                "description": "The local stack started by `cargo xtask up`."
            }
        },
        "channels": Value::Object(channels),
        "operations": Value::Object(operations),
        "components": { "messages": Value::Object(messages) },
    });
    Ok(serde_json::to_string_pretty(&document)? + "\n")
}
