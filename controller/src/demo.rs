//! `bindwave demo`: a real rollout to a simulated fleet on this machine.
//!
//! It starts the controller with its embedded broker in a temporary directory, and N phones in this
//! process, each a real agent with its own MQTT connection and state directory: a mix of part numbers,
//! hardware levels and minimum software versions. It packs two binds, one with the hardware-level field and
//! one without, rolls each out to the whole fleet over MQTT and HTTP, and prints a summary per rollout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bindwave_agent::config::BrokerSettings;
use bindwave_agent::{Agent, AgentConfig};
use bindwave_proto::bind::pack;
use bindwave_proto::wire::DeviceId;
use bindwave_proto::{HardwareLevel, SoftwareVersion};
use tokio::sync::watch;

use crate::api::{CreateRollout, RolloutStatus};
use crate::broker::BrokerConfig;
use crate::cli::{progress_bar, update_bar};
use crate::client::ApiClient;
use crate::engine::Selection;
use crate::model::Outcome;
use crate::service::{MqttMode, ServeOptions, Service};
use crate::table::Table;
use crate::ControllerError;

pub struct DemoOptions {
    pub devices: usize,
}

/// The fleet's models: part number and the hardware level it maps to.
const MODELS: [(&str, u16); 4] =
    [("S30817-S7701-A101", 2), ("S30817-S7702-A101", 3), ("S30817-S7703-A101", 4), ("S30817-S7704-A101", 5)];
/// Minimum supported software versions, by share of the fleet (index modulo 7).
const MINIMUMS: [&str; 7] = ["V3 R1.0.0", "V3 R1.0.0", "V3 R1.0.0", "V3 R1.0.0", "V3 R2.0.0", "V3 R3.0.0", "V3 R5.0.0"];
const FACTORY: &str = "V3 R2.9.0";

fn version(s: &str) -> Result<SoftwareVersion, ControllerError> {
    Ok(s.parse()?)
}

pub async fn run(opts: DemoOptions) -> Result<(), ControllerError> {
    crate::raise_open_files_limit();
    let dir = tempfile::Builder::new()
        .prefix("bindwave-demo-")
        .tempdir()
        .map_err(crate::error::io_err("create a temporary directory in", &std::env::temp_dir()))?;
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let service = Service::start(ServeOptions {
        data_dir: dir.path().join("controller"),
        http_listen: any,
        mqtt: MqttMode::Embedded(BrokerConfig { listen: any, ..BrokerConfig::default() }),
        public_url: None,
    })
    .await?;
    println!(
        "controller: HTTP http://{}  MQTT {} (embedded)  data {}",
        service.http_addr,
        service.mqtt_url,
        dir.path().display()
    );

    let result = fleet_and_rollouts(&opts, &service, dir.path()).await;
    service.stop().await?;
    result
}

async fn fleet_and_rollouts(
    opts: &DemoOptions,
    service: &Service,
    dir: &std::path::Path,
) -> Result<(), ControllerError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let http = bindwave_agent::agent::http_client()?;
    let mut agents = Vec::with_capacity(opts.devices);
    for i in 0..opts.devices {
        let (part, level) = MODELS[i % MODELS.len()];
        let config = AgentConfig {
            device_id: DeviceId::new(format!("phone-{:04}", i + 1))?,
            part_number: part.to_string(),
            software_version: version(FACTORY)?,
            minimum_software_version: version(MINIMUMS[i % MINIMUMS.len()])?,
            hardware_level: None,
            hardware_levels: MODELS.iter().map(|(p, l)| (p.to_string(), HardwareLevel(*l))).collect(),
            state_dir: dir.join("phones").join(format!("phone-{:04}", i + 1)),
            broker: BrokerSettings { url: service.mqtt_url.clone(), username: None, password: None },
            report_retry_secs: 5,
        };
        debug_assert_eq!(config.hardware_levels.get(part), Some(&HardwareLevel(level)));
        let agent = Agent::new(config)?.with_http_client(http.clone());
        let mut stop = stop_rx.clone();
        agents.push(tokio::spawn(agent.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }

    let api = ApiClient::new(&format!("http://{}", service.http_addr))?;
    let started = Instant::now();
    let bar = progress_bar(opts.devices);
    bar.set_prefix("fleet");
    loop {
        let online = api.devices().await?.iter().filter(|d| d.online && d.hello.is_some()).count();
        bar.set_position(online as u64);
        if online >= opts.devices {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bar.finish_and_clear();
            let _ = stop_tx.send(true);
            return Err(ControllerError::BadRequest(format!(
                "only {online} of {} simulated phones connected within 2 minutes",
                opts.devices
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.finish_and_clear();
    println!(
        "fleet: {} phones online in {:.1?} ({} models, hardware levels 2-5)",
        opts.devices,
        started.elapsed(),
        MODELS.len()
    );

    // Two binds: one that names the hardware levels it supports, one that leaves it to the software level.
    let payload: Vec<u8> = (0..64 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let binds = [("V3 R3.18.0", Some(vec![HardwareLevel(3), HardwareLevel(4)])), ("V3 R4.2.0", None)];
    let mut summaries = Vec::new();
    for (v, levels) in binds {
        let bytes = pack(version(v)?, levels.clone(), &payload)?;
        let image = api.add_image_bytes(bytes).await?;
        let hw = levels.as_ref().map_or("none (software level decides)".to_string(), |l| {
            l.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        });
        println!("\nimage {} {}  hardware levels: {hw}", &image.sha256[..12], image.software_version);
        let rollout = api
            .create_rollout(&CreateRollout {
                image: image.sha256.clone(),
                devices: Selection::All,
                override_compat: false,
            })
            .await?;
        let t0 = Instant::now();
        api.start_rollout(&rollout.id).await?;
        let bar = progress_bar(opts.devices);
        let status = loop {
            let status = api.rollout(&rollout.id).await?;
            update_bar(&bar, &status);
            let open = status.counts.get(&Outcome::InProgress).unwrap_or(&0)
                + status.counts.get(&Outcome::Pending).unwrap_or(&0);
            if open == 0 {
                break status;
            }
            if t0.elapsed() > Duration::from_secs(300) {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        bar.finish_and_clear();
        let elapsed = t0.elapsed();
        print_line(&status, elapsed);
        summaries.push((status, hw, elapsed));
    }

    println!("\nsummary");
    let mut t = Table::new([
        "ROLLOUT",
        "BIND",
        "HW FIELD",
        "DEVICES",
        "ACCEPTED",
        "REJECTED HW",
        "REJECTED SW",
        "FAILED",
        "UNFINISHED",
        "TIME",
    ]);
    for (s, hw, elapsed) in &summaries {
        let c = |o| s.counts.get(&o).copied().unwrap_or(0).to_string();
        let unfinished =
            s.counts.get(&Outcome::InProgress).unwrap_or(&0) + s.counts.get(&Outcome::Pending).unwrap_or(&0);
        t.row([
            s.rollout.id.clone(),
            s.image.as_ref().map_or("-".into(), |i| i.software_version.to_string()),
            hw.clone(),
            s.jobs.len().to_string(),
            c(Outcome::Succeeded),
            c(Outcome::RejectedHardware),
            c(Outcome::RejectedSoftware),
            c(Outcome::Failed),
            unfinished.to_string(),
            format!("{:.1?}", elapsed),
        ]);
    }
    print!("{t}");
    println!(
        "\nrejected phones kept running their old software, without a restart; see why with `bindwave rollout status`."
    );

    let _ = stop_tx.send(true);
    for a in agents {
        let _ = tokio::time::timeout(Duration::from_secs(5), a).await;
    }
    let unfinished: usize = summaries
        .iter()
        .map(|(s, ..)| s.counts.get(&Outcome::InProgress).unwrap_or(&0) + s.counts.get(&Outcome::Pending).unwrap_or(&0))
        .sum();
    if unfinished > 0 {
        return Err(ControllerError::BadRequest(format!("{unfinished} jobs did not finish within 5 minutes")));
    }
    Ok(())
}

fn print_line(s: &RolloutStatus, elapsed: Duration) {
    let c = |o| s.counts.get(&o).copied().unwrap_or(0);
    println!(
        "rollout {}: {} accepted, {} rejected for hardware level, {} rejected for software level, {} failed in {:.1?}",
        s.rollout.id,
        c(Outcome::Succeeded),
        c(Outcome::RejectedHardware),
        c(Outcome::RejectedSoftware),
        c(Outcome::Failed),
        elapsed
    );
}
