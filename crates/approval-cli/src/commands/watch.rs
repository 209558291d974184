//! `watch`: follows the streams and prints each new message as it is stored.

use contracts::{
    ApprovalDecision, Contract, DeadLetter, Event, Incident, Notification, OpsCommand, Silence,
};
use futures::StreamExt;

use crate::cli::WatchArgs;
use crate::records::Record;
use crate::render::{envelope, timeline_line};
use crate::streams::{self, ReadError};

use super::{connect, CmdResult, Failure};

pub(super) async fn run(args: WatchArgs, json: bool) -> CmdResult {
    let mut stream_names = vec![
        ApprovalDecision::INFO.stream,
        Notification::INFO.stream,
        DeadLetter::INFO.stream,
        Silence::INFO.stream,
    ];
    if args.everything {
        stream_names.extend([
            Event::INFO.stream,
            Incident::INFO.stream,
            OpsCommand::INFO.stream,
        ]);
    }
    let bus = connect().await?;
    let mut followed = Vec::new();
    let mut names = Vec::new();
    for name in stream_names {
        match streams::follow_stream(&bus, name).await {
            Ok(stream) => {
                followed.push(stream);
                names.push(name);
            }
            Err(ReadError::NoStream(name)) => {
                eprintln!("warning: stream {name} does not exist yet; not following it")
            }
            Err(e) => return Err(e.into()),
        }
    }
    if followed.is_empty() {
        return Err(Failure::refused(
            "none of the streams to follow exist (is the platform provisioned?)",
        ));
    }
    eprintln!(
        "watching {} for new messages (Ctrl-C to stop)",
        names.join(", ")
    );
    let mut merged = futures::stream::select_all(followed);
    let shutdown = contracts::runtime::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            next = merged.next() => match next {
                None => break,
                Some(Err(e)) => {
                    bus.close().await.ok();
                    return Err(e.into());
                }
                Some(Ok(raw)) => match Record::decode(raw) {
                    Ok(record) if json => println!(
                        "{}",
                        serde_json::to_string(&envelope(&record)).expect("JSON values serialize")
                    ),
                    Ok(record) => println!("{}", timeline_line(&record, None)),
                    Err(skipped) => eprintln!("skipped: {skipped}"),
                },
            },
        }
    }
    bus.close().await.ok();
    Ok(())
}
