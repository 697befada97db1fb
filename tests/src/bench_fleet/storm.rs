//! The reconnect storm: N phones with pending work reconnect at once, each saying hello, which is how a phone
//! asks for its unfinished jobs. It is made by restarting the controller (and so its embedded broker) while
//! a rollout's commands are out and unanswered: raw phones take their command and keep it in hand (no
//! reports), so after the restart every one of them is owed its command again. Timed from the first phone
//! back on the broker until every phone has its command again, and until the controller is idle again.
//!
//! The floor is the same hellos and commands with no controller logic: the controller's broker alone,
//! restarted under the same raw phones, and a raw responder that answers each hello with a prepared command.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bindwave_controller::fleet::device_id;
use bindwave_proto::wire::TopicKind;

use super::broker::BrokerProc;
use super::controller::{Controller, Mqtt};
use super::floor::{self, RawController};
use super::raw::{RawFleet, Role, Seen};
use super::{messages, procs, Scenario};

/// A controller is idle when it uses under this share of one core...
const IDLE_SHARE: f64 = 0.05;
/// ...over this many 100 ms windows in a row.
const IDLE_WINDOWS: u32 = 3;

#[derive(Debug, Clone)]
pub struct StormFigures {
    /// From the first phone back to the last phone commanded again.
    pub commands_out: Duration,
    /// From the first phone back to the controller idle again (at least `commands_out`).
    pub idle: Duration,
    /// The restarted controller's CPU seconds, its start included, until it was idle.
    pub controller_cpu: f64,
}

pub fn run(s: &Scenario) -> Result<StormFigures> {
    let phones = s.phones;
    let mut c = Controller::start(&s.dir, &s.dir.join("controller-data"), &Mqtt::Embedded)?;
    let sha = c.add_bind(&s.dir)?;
    let fleet = RawFleet::start(s.rt, &c.mqtt, phones, Role::Listen, 0)?;
    c.wait_fleet(phones, s.limit())?;
    let limit = s.limit();
    c.cli(&["rollout", "create", "--image", &sha, "--all", "--waves", "100%", "--start"])?;
    fleet.wait("phones commanded before the restart", phones, limit, |s| &s.commands)?;

    c.stop()?;
    reset(&fleet.seen);
    c.start_again()?;
    fleet.wait("phones commanded again after the restart", phones, limit, |s| &s.commands)?;
    let (back, last) = span(&fleet.seen)?;
    let idle_at = procs::wait_idle(c.pid(), IDLE_SHARE, IDLE_WINDOWS, Duration::from_secs(120))?;
    Ok(StormFigures {
        commands_out: last.duration_since(back),
        idle: idle_at.max(last).duration_since(back),
        controller_cpu: procs::cpu_seconds(c.pid()),
    })
}

/// The storm's floor: from the first phone back on the restarted broker to the last phone commanded.
pub fn floor(s: &Scenario) -> Result<Duration> {
    let phones = s.phones;
    let mut broker = BrokerProc::start(&s.dir, "127.0.0.1:0")?;
    let fleet = RawFleet::start(s.rt, &broker.url, phones, Role::Listen, 0)?;
    let jobs = messages::prepared(phones)?;
    let commands: HashMap<String, Vec<u8>> =
        jobs.commands.into_iter().enumerate().map(|(i, c)| (device_id(i), c)).collect();

    broker.kill();
    reset(&fleet.seen);
    // The responder is there as soon as the broker is, as the controller's own client is on its broker.
    let url = broker.url.clone();
    let responder = s.rt.spawn(async move {
        let ctrl = RawController::connect(&url, "bench-floor-controller", &[TopicKind::Hello], Duration::from_secs(60))
            .await?;
        anyhow::Ok(floor::answer_hellos(ctrl, commands))
    });
    broker.start_again()?;
    let limit = s.limit();
    let waited = fleet.wait("phones commanded by the floor's responder", phones, limit, |s| &s.commands);
    match s.rt.block_on(responder) {
        Ok(Ok(answering)) => answering.abort(),
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(e).context("the floor's responder"),
    }
    waited?;
    let (back, last) = span(&fleet.seen)?;
    Ok(last.duration_since(back))
}

fn reset(seen: &Seen) {
    seen.connects.reset();
    seen.subscribed.reset();
    seen.commands.reset();
}

/// The first reconnection and the last command since the reset.
fn span(seen: &Seen) -> Result<(Instant, Instant)> {
    let back = seen.connects.first(seen.base).context("no phone reconnected")?;
    let last = seen.commands.last(seen.base).context("no phone was commanded")?;
    Ok((back, last))
}
