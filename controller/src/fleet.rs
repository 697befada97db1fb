//! A simulated fleet: N real agents in one process, each with its own MQTT connection and state directory.
//! `bindwave demo` runs one beside the controller; `bindwave simulate` runs one in a process of its own, for
//! fleets too large to share a process with the broker, and for tests that restart the controller.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bindwave_agent::config::{BrokerSettings, TrustSettings};
use bindwave_agent::{Agent, AgentConfig};
use bindwave_proto::wire::DeviceId;
use bindwave_proto::HardwareLevel;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ControllerError;

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

pub struct Fleet {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), bindwave_agent::AgentError>>>,
    pub state_root: PathBuf,
}

/// How simulated phones log in to a secure broker: they verify it (and the controller's HTTPS) with `ca_file`, and each logs in with its id
/// and the password derived from `secret`.
#[derive(Debug, Clone)]
pub struct FleetLogin {
    pub ca_file: PathBuf,
    pub secret: crate::broker::auth::BrokerSecret,
}

impl Fleet {
    /// Starts phones `0..devices` spread over `brokers` (each with the others as fallbacks), with state under
    /// `state_root`, each pinning the keys of `trust`, and logged in to a secure broker with `login` if given.
    pub fn spawn(
        devices: usize,
        brokers: &[String],
        state_root: &Path,
        trust: &TrustSettings,
        login: Option<&FleetLogin>,
    ) -> Result<Fleet, ControllerError> {
        let (stop, stop_rx) = watch::channel(false);
        // One set of download clients for all; with a login, they verify the controller's HTTPS with its CA.
        let transport = bindwave_agent::Transport::new(login.map(|l| l.ca_file.as_path()))?;
        let mut tasks = Vec::with_capacity(devices);
        for i in 0..devices {
            let mut config = phone_config(i, brokers, state_root, trust)?;
            if let Some(login) = login {
                let identity = crate::broker::acl::Identity::Device(config.device_id.clone());
                config.broker.ca_file = Some(login.ca_file.clone());
                config.download.ca_file = Some(login.ca_file.clone());
                config.broker.username = Some(config.device_id.to_string());
                config.broker.password = Some(login.secret.password(&identity));
            }
            let identity = config.identity()?;
            let agent = Agent::new(config, identity)?.with_transport(transport.clone());
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(agent.run(async move {
                let _ = stop.wait_for(|s| *s).await;
            })));
        }
        Ok(Fleet { stop, tasks, state_root: state_root.to_path_buf() })
    }

    /// Stops every phone (each says goodbye to the broker).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

#[cfg(test)]
mod tests {
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
