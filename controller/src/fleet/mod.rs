//! A simulated fleet: N real agents in one process, each with its own MQTT connection and state directory.
//! `bindwave demo` runs one beside the controller; `bindwave simulate` runs one in a process of its own, for
//! fleets too large to share a process with the broker, and for tests that restart the controller.
//!
//! The phones run the agent's own code. What the simulator changes is outside a phone's config: how hard their
//! state is synced ([`bindwave_agent::Durability`]), the sizes of their MQTT links' buffers
//! ([`bindwave_link::LinkSizes::SMALL`]), and, for a fault mix ([`faults`]), a failing installer, a network
//! that drops, a throttled download ([`throttle`]) or a power cut mid-update. [`memory`] measures what a phone
//! costs.

pub mod faults;
pub mod memory;
pub mod throttle;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bindwave_agent::config::{BrokerSettings, Identity, TrustSettings};
use bindwave_agent::{Agent, AgentConfig, AgentError, Durability, Transport};
use bindwave_proto::wire::{DeviceId, JobState};
use bindwave_proto::HardwareLevel;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::ControllerError;
use faults::{CrashPoint, Fault};

/// The fleet's models: model name, part number, and the hardware level it maps to.
pub const MODELS: [(&str, &str, u16); 4] = [
    ("CP200", "S30817-S7701-A101", 2),
    ("CP400", "S30817-S7702-A101", 3),
    ("CP600", "S30817-S7703-A101", 4),
    ("CP700", "S30817-S7704-A101", 5),
];
/// Minimum supported software versions, by share of the fleet (index modulo 7).
pub const MINIMUMS: [&str; 7] =
    ["V3 R1.0.0", "V3 R1.0.0", "V3 R1.0.0", "V3 R1.0.0", "V3 R2.0.0", "V3 R3.0.0", "V3 R5.0.0"];
/// What every simulated phone runs before its first update.
pub const FACTORY: &str = "V3 R2.9.0";
/// Sites, for label targeting (index modulo 3).
pub const SITES: [&str; 3] = ["site=munich", "site=vienna", "site=zurich"];

/// The id of simulated phone `i` (0-based).
pub fn device_id(i: usize) -> String {
    format!("phone-{:05}", i + 1)
}

/// Phone `i`'s broker and its fallbacks: phones are spread over `brokers` in turn (phone `i` on broker `i` mod
/// their number), each with the brokers after its own, in turn, as fallbacks.
pub fn phone_brokers(i: usize, brokers: &[String]) -> (String, Vec<String>) {
    let n = brokers.len().max(1);
    let mut turn = brokers.iter().cycle().skip(i % n).take(brokers.len()).cloned();
    (turn.next().unwrap_or_default(), turn.collect())
}

/// The agent config of simulated phone `i` on `brokers` ([`phone_brokers`]), pinning what `trust` pins.
pub fn phone_config(
    i: usize,
    brokers: &[String],
    state_root: &Path,
    trust: &TrustSettings,
) -> Result<AgentConfig, ControllerError> {
    let (model, part, _) = MODELS[i % MODELS.len()];
    let (url, fallback_urls) = phone_brokers(i, brokers);
    Ok(AgentConfig {
        device_id: DeviceId::new(device_id(i))?,
        part_number: part.to_string(),
        software_version: FACTORY.parse()?,
        minimum_software_version: MINIMUMS[i % MINIMUMS.len()].parse()?,
        hardware_level: None,
        hardware_levels: MODELS.iter().map(|(_, p, l)| (p.to_string(), HardwareLevel(*l))).collect(),
        model: Some(model.to_string()),
        labels: vec![SITES[i % SITES.len()].to_string()],
        timezone: None,
        state_dir: state_root.join(device_id(i)),
        broker: BrokerSettings {
            url,
            fallback_urls,
            username: None,
            password: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
        },
        report_retry_secs: 5,
        // The agent's default.
        heartbeat_secs: 300,
        download: Default::default(),
        access: None,
        hardware_probe: None,
        health: Default::default(),
        indicator: Default::default(),
        installer: Default::default(),
        minimum_software_versions: Default::default(),
        trust: trust.clone(),
    })
}

/// What the simulator does to its phones beyond their config.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub durability: Durability,
    pub mix: faults::Mix,
    /// Draws which phones get which fault.
    pub seed: u64,
    /// The bytes a second a slow phone downloads at.
    pub slow_rate: u64,
    /// How long after it starts an offline phone drops off.
    pub offline_after: Duration,
    /// How long it stays away before it comes back; `None`: for good.
    pub offline_for: Option<Duration>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            durability: Durability::Full,
            mix: faults::Mix::default(),
            seed: 1,
            slow_rate: 20_000,
            offline_after: Duration::from_secs(5),
            offline_for: None,
        }
    }
}

/// How long a phone that lost power stays off before it starts again.
pub const POWER_CUT: Duration = Duration::from_millis(500);

/// The installer of a phone that fails to install: it says why, and fails.
const FAILING_INSTALLER: &str = "echo 'simulated installer failure (bindwave simulate --fail-install)' >&2; exit 1";

pub struct Fleet {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), AgentError>>>,
    pub state_root: PathBuf,
    /// Each phone's fault, by index.
    pub faults: Vec<Option<Fault>>,
    _throttle: Option<throttle::Throttle>,
}

/// How simulated phones log in to a secure broker: they verify it (and the controller's HTTPS) with `ca_file`, and each logs in with its id
/// and the password derived from `secret`.
#[derive(Debug, Clone)]
pub struct FleetLogin {
    pub ca_file: PathBuf,
    pub secret: crate::broker::auth::BrokerSecret,
}

impl Fleet {
    /// Starts phones `0..devices` spread over `brokers` (each with the others as fallbacks), with state under `state_root`, each pinning the keys of
    /// `trust`, logged in to a secure broker with `login` if given, and misbehaving as `options` say.
    pub async fn spawn(
        devices: usize,
        brokers: &[String],
        state_root: &Path,
        trust: &TrustSettings,
        login: Option<&FleetLogin>,
        options: &FleetOptions,
    ) -> Result<Fleet, ControllerError> {
        let faults = faults::assign(devices, &options.mix, options.seed)
            .map_err(|detail| ControllerError::Setting { key: "faults", detail })?;
        let (stop, stop_rx) = watch::channel(false);
        // One set of download clients for all; with a login, they verify the controller's HTTPS with its CA.
        let ca_file = login.map(|l| l.ca_file.as_path());
        let transport = Transport::for_fleet(ca_file, None)?;
        // Slow phones, and those that lose power mid-download (so that the cut falls mid-download), go through
        // the throttle.
        let throttled =
            |f: &Option<Fault>| matches!(f, Some(Fault::SlowDownload | Fault::CrashMidUpdate(CrashPoint::Download)));
        let throttle = match faults.iter().any(throttled) {
            true => Some(
                throttle::Throttle::start(options.slow_rate)
                    .await
                    .map_err(crate::error::io_err("start the download throttle on", Path::new("127.0.0.1")))?,
            ),
            false => None,
        };
        let slow = throttle.as_ref().map(|t| Transport::for_fleet(ca_file, Some(&t.url()))).transpose()?;
        let mut tasks = Vec::with_capacity(devices);
        for (i, fault) in faults.iter().enumerate() {
            let mut config = phone_config(i, brokers, state_root, trust)?;
            if let Some(login) = login {
                let identity = crate::broker::acl::Identity::Device(config.device_id.clone());
                config.broker.ca_file = Some(login.ca_file.clone());
                config.download.ca_file = Some(login.ca_file.clone());
                config.broker.username = Some(config.device_id.to_string());
                config.broker.password = Some(login.secret.password(&identity));
            }
            if *fault == Some(Fault::FailInstall) {
                config.installer.command = Some(vec!["sh".into(), "-c".into(), FAILING_INSTALLER.into()]);
            }
            let identity = config.identity()?;
            let phone = Phone {
                config,
                identity,
                transport: match (&slow, throttled(fault)) {
                    (Some(slow), true) => slow.clone(),
                    _ => transport.clone(),
                },
                durability: options.durability,
            };
            // Refused here, not later in the task: a config the agent cannot run with is the simulator's bug.
            drop(phone.agent()?);
            let stop = stop_rx.clone();
            tasks.push(tokio::spawn(Box::new(phone).live(*fault, options.clone(), stop)));
        }
        Ok(Fleet { stop, tasks, state_root: state_root.to_path_buf(), faults, _throttle: throttle })
    }

    /// Stops every phone (each says goodbye to the broker).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// One simulated phone: what it is made of, so that it can start again after a power cut.
struct Phone {
    config: AgentConfig,
    identity: Identity,
    transport: Transport,
    durability: Durability,
}

impl Phone {
    /// An agent for a run that may not be the phone's last.
    fn agent(&self) -> Result<Agent, AgentError> {
        Self::made(self.config.clone(), self.identity.clone(), self.transport.clone(), self.durability)
    }

    /// The agent of the phone's last run, which takes its config (one copy per phone, not two).
    fn into_agent(self) -> Result<Agent, AgentError> {
        Self::made(self.config, self.identity, self.transport, self.durability)
    }

    fn made(
        config: AgentConfig,
        id: Identity,
        transport: Transport,
        durability: Durability,
    ) -> Result<Agent, AgentError> {
        Ok(Agent::new(config, id)?
            .with_transport(transport)
            .with_durability(durability)
            .with_link_sizes(bindwave_link::LinkSizes::SMALL))
    }

    /// Runs the phone until the fleet stops, with its fault.
    /// Boxed: the phone's future holds it for the phone's life, and the fleet keeps one a phone.
    async fn live(
        self: Box<Self>,
        fault: Option<Fault>,
        options: FleetOptions,
        stop: watch::Receiver<bool>,
    ) -> Result<(), AgentError> {
        let id = self.config.device_id.clone();
        match fault {
            Some(Fault::Offline) => {
                tokio::select! {
                    r = self.agent()?.run(stopped(stop.clone())) => return r,
                    () = tokio::time::sleep(options.offline_after) => {}
                }
                // Dropped: the connection is gone without a goodbye, and the broker publishes the last will.
                tracing::info!(device = %id, "simulated: off the network");
                let Some(away) = options.offline_for else {
                    stopped(stop).await;
                    return Ok(());
                };
                tokio::select! {
                    () = stopped(stop.clone()) => return Ok(()),
                    () = tokio::time::sleep(away) => {}
                }
                tracing::info!(device = %id, "simulated: back on the network");
            }
            Some(Fault::CrashMidUpdate(point)) => {
                let (tx, mut shown) = mpsc::unbounded_channel();
                tokio::select! {
                    r = self.agent()?.with_observer(tx).run(stopped(stop.clone())) => return r,
                    () = cut_point(&mut shown, point) => {}
                }
                // Dropped mid-update with its job: a power cut. It starts again on the same state.
                tracing::info!(device = %id, "simulated: power cut ({point:?})");
                tokio::time::sleep(POWER_CUT).await;
            }
            _ => {}
        }
        (*self).into_agent()?.run(stopped(stop)).await
    }
}

/// Until the fleet is told to stop.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Until the phone shows the state at which its power is cut: for [`CrashPoint::Download`], a download that has
/// made progress (10% or more), or any later stage, whichever comes first; for [`CrashPoint::Install`], installing.
async fn cut_point(shown: &mut mpsc::UnboundedReceiver<(JobState, Option<u8>)>, point: CrashPoint) {
    while let Some((state, progress)) = shown.recv().await {
        let cut = match point {
            CrashPoint::Download => match state {
                JobState::Downloading => progress.is_some_and(|p| p >= 10),
                JobState::Verifying | JobState::Installing => true,
                _ => false,
            },
            CrashPoint::Install => state == JobState::Installing,
        };
        if cut {
            return;
        }
    }
    std::future::pending().await
}

#[cfg(test)]
mod broker_tests {
    use super::*;

    #[test]
    fn phones_are_spread_over_the_brokers_each_with_the_others_as_fallbacks() {
        let brokers: Vec<String> = ["mqtt://a", "mqtt://b", "mqtt://c"].map(String::from).to_vec();
        let of = |i| phone_brokers(i, &brokers);
        assert_eq!(of(0), ("mqtt://a".into(), vec!["mqtt://b".into(), "mqtt://c".into()]));
        assert_eq!(of(1), ("mqtt://b".into(), vec!["mqtt://c".into(), "mqtt://a".into()]));
        assert_eq!(of(5), ("mqtt://c".into(), vec!["mqtt://a".into(), "mqtt://b".into()]));
        assert_eq!(phone_brokers(7, &brokers[..1]), ("mqtt://a".into(), vec![]));
    }
}
