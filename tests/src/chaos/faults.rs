//! The fault plan and the supervisor that carries it out: every service process is killed with
//! SIGKILL at seeded points (each more than once) and started again after a seeded pause; the
//! broker is restarted, or one cluster node stopped for good. Between faults the supervisor
//! does what systemd's `Restart=always` would: a process that exited on its own is started
//! again, and noted (the test reports such exits).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::Context as JetStream;
use orion_testkit::wait_until;
use rand::rngs::StdRng;
use rand::Rng;
use tokio::time::Instant;

use crate::stack::Stack;

/// The services the plan kills (every service of the platform that runs as a process).
pub const SERVICES: [&str; 4] = ["ops-worker", "guardian", "brain", "commander"];

/// How long after the start the first fault may come: the flood is under way by then.
const LEAD: Duration = Duration::from_secs(2);
/// How often the supervisor looks at its processes.
const TICK: Duration = Duration::from_millis(100);
/// How long a kill meant for a busy moment waits for one.
const BUSY_PATIENCE: Duration = Duration::from_secs(3);

/// One fault.
#[derive(Debug, Clone)]
pub enum Fault {
    /// SIGKILL the service's process, and start it again `down` later. With `when_busy` the
    /// kill waits (a little) for a moment when the service holds unacknowledged messages, so
    /// that it dies mid-work: a random instant often finds it idle between two messages.
    Kill {
        service: &'static str,
        down: Duration,
        when_busy: bool,
    },
    /// Restart the single nats-server (SIGTERM, then the same port and file store).
    RestartBroker,
    /// Stop cluster node `peer` (an index into [`Stack::peers`]) for the rest of the run.
    StopNode { peer: usize },
}

/// A fault and when it comes, counted from the start of the run.
#[derive(Debug, Clone)]
pub struct Planned {
    pub at: Duration,
    pub fault: Fault,
}

/// What happens to the broker during the run.
#[derive(Debug, Clone, Copy)]
pub enum BrokerFault {
    Restart,
    /// Stop one of this many peer nodes.
    StopOneOf(usize),
}

/// The plan: within `span`, every service is killed `kills_each` times — once in each of
/// `kills_each` equal slots, early enough in its slot that the process is back (the wait for a
/// busy moment and the pause add up to 6 s at most) and runs a while before its next death —
/// and the broker fault comes in the middle half of the span, while the flood is at its
/// height. Sorted by time.
pub fn plan(
    rng: &mut StdRng,
    kills_each: u32,
    span: Duration,
    broker: BrokerFault,
) -> Vec<Planned> {
    let slot = span / kills_each.max(1);
    let mut plan = Vec::new();
    for service in SERVICES {
        for k in 0..kills_each {
            let at = LEAD + slot * k + slot.mul_f64(rng.random_range(0.1..0.75));
            let down = Duration::from_millis(rng.random_range(300..3000));
            let when_busy = rng.random_bool(0.5);
            plan.push(Planned {
                at,
                fault: Fault::Kill {
                    service,
                    down,
                    when_busy,
                },
            });
        }
    }
    let at = LEAD + span.mul_f64(rng.random_range(0.25..0.75));
    let fault = match broker {
        BrokerFault::Restart => Fault::RestartBroker,
        BrokerFault::StopOneOf(peers) => Fault::StopNode {
            peer: rng.random_range(0..peers),
        },
    };
    plan.push(Planned { at, fault });
    plan.sort_by_key(|p| p.at);
    plan
}

/// The durable consumers through which each service takes its main work (one per partition
/// for a partitioned service).
fn main_consumers(service: &str) -> Vec<&'static contracts::ConsumerInfo> {
    let contract = match service {
        "ops-worker" => "ops_command",
        "commander" => "action",
        "brain" => "incident",
        "guardian" => "event",
        _ => return Vec::new(),
    };
    contracts::DURABLE_CONSUMERS
        .iter()
        .filter(|c| c.service == service && c.contract == contract)
        .collect()
}

/// Carries out a plan on a stack and keeps its processes running.
pub struct Supervisor {
    admin: JetStream,
    start: Instant,
    plan: VecDeque<Planned>,
    /// Killed processes waiting to be started again.
    respawns: Vec<(Instant, &'static str)>,
    /// What the supervisor did, with the time since the start.
    pub journal: Vec<String>,
    /// Processes that exited without being killed (then started again).
    pub unexpected_exits: Vec<String>,
    /// Kills of a running process, per service.
    pub kills: BTreeMap<&'static str, u32>,
}

impl Supervisor {
    /// `admin` reads the consumers, to find busy moments.
    pub fn new(plan: Vec<Planned>, admin: JetStream) -> Self {
        Self {
            admin,
            start: Instant::now(),
            plan: plan.into(),
            respawns: Vec::new(),
            journal: Vec::new(),
            unexpected_exits: Vec::new(),
            kills: BTreeMap::new(),
        }
    }

    /// Whether every planned fault was carried out and every killed process runs again.
    pub fn done(&self) -> bool {
        self.plan.is_empty() && self.respawns.is_empty()
    }

    /// Carries out the plan, then returns.
    pub async fn run(&mut self, stack: &mut Stack) -> Result<()> {
        while !self.done() {
            self.tend(stack, TICK).await?;
        }
        Ok(())
    }

    /// Looks after the processes for `period` (what is due, and exits), then returns.
    pub async fn tend(&mut self, stack: &mut Stack, period: Duration) -> Result<()> {
        let until = Instant::now() + period;
        loop {
            self.tick(stack).await?;
            if Instant::now() >= until {
                return Ok(());
            }
            // The supervision cadence, not a wait for a condition: a tick every TICK.
            tokio::time::sleep(TICK).await;
        }
    }

    /// Does what is due: planned faults, restarts of killed processes, restarts of processes
    /// that exited on their own.
    pub async fn tick(&mut self, stack: &mut Stack) -> Result<()> {
        let now = Instant::now();
        while self.plan.front().is_some_and(|p| self.start + p.at <= now) {
            let planned = self.plan.pop_front().expect("checked");
            self.apply(stack, planned.fault).await?;
        }
        let (due, waiting): (Vec<_>, Vec<_>) =
            self.respawns.drain(..).partition(|(when, _)| *when <= now);
        self.respawns = waiting;
        for (_, service) in due {
            stack.service_mut(service)?.respawn()?;
            self.note(format!("started {service} again"));
        }
        self.restart_exited(stack)
    }

    async fn apply(&mut self, stack: &mut Stack, fault: Fault) -> Result<()> {
        match fault {
            Fault::Kill {
                service,
                down,
                when_busy,
            } => {
                let busy = match when_busy {
                    true => Some(self.wait_until_busy(service).await),
                    false => None,
                };
                let was_running = stack.service_mut(service)?.kill();
                if was_running {
                    *self.kills.entry(service).or_default() += 1;
                }
                self.respawns.push((Instant::now() + down, service));
                let moment = match busy {
                    Some(unacked) => format!("; {unacked} messages unacknowledged"),
                    None => String::new(),
                };
                self.note(format!(
                    "SIGKILL {service} (running: {was_running}{moment}); down for {down:?}"
                ));
            }
            Fault::RestartBroker => {
                self.note("restarting nats-server".into());
                // The restart blocks (it waits for the server); other tasks keep going.
                tokio::task::block_in_place(|| stack.server.restart())
                    .context("restarting nats-server")?;
                self.note("nats-server is back".into());
            }
            Fault::StopNode { peer } => {
                let node = stack.peers.get_mut(peer).context("no such peer node")?;
                let port = node.port();
                tokio::task::block_in_place(|| node.stop());
                self.note(format!("stopped cluster node on port {port} for good"));
            }
        }
        Ok(())
    }

    /// Waits up to [`BUSY_PATIENCE`] until the service's main consumer has unacknowledged
    /// messages; returns how many it had when the wait ended. (Messages a killed instance left
    /// unacknowledged count too until they are redelivered: then this is just a random moment.)
    async fn wait_until_busy(&self, service: &str) -> usize {
        let consumers = main_consumers(service);
        if consumers.is_empty() {
            return 0;
        }
        let what = format!("{service} busy");
        let busy = wait_until(&what, BUSY_PATIENCE, || async {
            let mut unacked = 0;
            for consumer in &consumers {
                unacked += match self.admin.get_stream(consumer.stream).await {
                    Ok(stream) => stream
                        .consumer_info(consumer.name)
                        .await
                        .map_or(0, |i| i.num_ack_pending),
                    Err(_) => 0,
                };
            }
            (unacked > 0).then_some(unacked)
        })
        .await;
        // Not busy within the patience: the kill lands at a random moment, with none unacked.
        busy.unwrap_or(0)
    }

    fn restart_exited(&mut self, stack: &mut Stack) -> Result<()> {
        let killed: Vec<&str> = self.respawns.iter().map(|(_, s)| *s).collect();
        for process in stack.services.iter_mut() {
            if killed.contains(&process.name) || process.running() {
                continue;
            }
            let status = process
                .exit_status()
                .map_or("?".to_string(), |s| s.to_string());
            let what = format!("{} exited on its own ({status})", process.name);
            let last = last_lines(&process.log_text(), 3);
            let at = self.elapsed();
            self.unexpected_exits
                .push(format!("{at:.1} s: {what}; its log ends:\n{last}"));
            self.note(format!("{what}; starting it again; its log ends:\n{last}"));
            process.respawn()?;
        }
        Ok(())
    }

    fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn note(&mut self, what: String) {
        let line = format!("{:6.1} s  {what}", self.elapsed());
        println!("chaos: {line}");
        self.journal.push(line);
    }
}

/// The last `n` lines of `log`, indented.
fn last_lines(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
