//! `bindwave demo`: real staged rollouts to a simulated fleet on this machine.
//!
//! It starts the controller with its embedded broker in a temporary directory, and N phones in this process
//! (see [`crate::fleet`]): four models at hardware levels 2 to 5, three minimum software levels. It rolls out
//! three binds in waves: one with the hardware-level field, one without, and one that arrives corrupted, to
//! show the failure gate stopping it in its first wave. Then it prints a summary.
//!
//! Nothing is turned off: the demo makes a release key and signs its binds; the controller makes its
//! development CA, command key, admin token and broker secret; every phone pins both keys, logs in to the
//! broker over TLS with its derived password, and downloads over HTTPS.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bindwave_agent::config::TrustSettings;
use bindwave_proto::{BindHeader, HardwareLevel, SoftwareVersion, TrustedKeys};
use sha2::{Digest, Sha256};

use crate::api::RolloutRequest;
use crate::broker::auth::{secret_path, BrokerSecret};
use crate::broker::{BrokerAccess, BrokerConfig, SecureAccess};
use crate::cli::output::progress_bar;
use crate::cli::rollout::{settled, state_line};
use crate::client::ApiClient;
use crate::fleet::{Fleet, FleetLogin, FleetOptions, MODELS};
use crate::images::{sign_header, ImagePolicy};
use crate::keys::SigningKey;
use crate::model::{Gates, Outcome, RolloutSpec, RolloutState, TargetFilter, WaveSize, WaveSpec};
use crate::service::{BrokerLogin, MqttMode, ServeOptions, Service};
use crate::table::Table;
use crate::ControllerError;

pub struct DemoOptions {
    pub devices: usize,
    /// Where the controller serves HTTP; a random local port if `None`.
    pub http_listen: Option<SocketAddr>,
    /// Keep running after the rollouts until `stop` completes.
    pub keep_running: bool,
    /// The Prometheus analysis gates query.
    pub prometheus_url: Option<String>,
}

/// Runs the demo; with `keep_running`, the controller and fleet stay up after the rollouts until `stop`.
pub async fn run(opts: DemoOptions, stop: impl std::future::Future<Output = ()>) -> Result<(), ControllerError> {
    crate::raise_open_files_limit();
    let dir = tempfile::Builder::new()
        .prefix("bindwave-demo-")
        .tempdir()
        .map_err(crate::error::io_err("create a temporary directory in", &std::env::temp_dir()))?;
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let data_dir = dir.path().join("controller");
    // The demo's own release key: it signs the binds, the controller and every phone trust it.
    let key = crate::keys::SigningKey::generate()?;
    let images = ImagePolicy { release_keys: TrustedKeys::new([key.public()]), allow_unsigned: false };
    // The demo is set up as `bindwave serve` is: MQTT over TLS with a development CA, every phone logged in
    // with its derived password and kept to its own topics.
    let tls = crate::certs::ensure_dev_tls(&data_dir, &crate::certs::server_hosts(&[]))?;
    let (secret, _) = BrokerSecret::load_or_create(&secret_path(&data_dir))?;
    let access = SecureAccess {
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        client_ca: None,
        secret: secret.clone(),
        refused: None,
    };
    let service = Service::start(ServeOptions {
        data_dir: data_dir.clone(),
        http_listen: opts.http_listen.unwrap_or(any),
        mqtt: MqttMode::Embedded(BrokerConfig {
            listen: any,
            access: BrokerAccess::Secure(Box::new(access)),
            ..BrokerConfig::default()
        }),
        public_url: None,
        prometheus_url: opts.prometheus_url.clone(),
        webhooks: None,
        images,
        command_ttl: crate::service::DEFAULT_COMMAND_TTL,
        login: BrokerLogin {
            tls: bindwave_link::TlsFiles { ca_file: Some(tls.ca.clone()), ..Default::default() },
            ..Default::default()
        },
        // HTTPS with the same development certificate, and an admin token the demo reads back.
        http: crate::service::HttpOptions { tls: Some((tls.cert.clone(), tls.key.clone())), ..Default::default() },
    })
    .await?;
    println!(
        "controller: HTTP {}  MQTT {} (embedded)  data {}",
        service.http_url,
        service.mqtt_url,
        dir.path().display()
    );
    let token_file = data_dir.join(crate::token_store::ADMIN_TOKEN_FILE);
    let token = std::fs::read_to_string(&token_file).map_err(crate::error::io_err("read", &token_file))?;
    let api = ApiClient::connect(&crate::client::Remote {
        url: service.http_url.clone(),
        token: Some(token.trim().to_string()),
        ca_file: Some(tls.ca.clone()),
    })?;
    let trust = TrustSettings {
        keys: vec![key.public().to_line()],
        controller_keys: vec![service.command_key.to_line()],
        ..Default::default()
    };
    let login = FleetLogin { ca_file: tls.ca, secret };
    let phones = dir.path().join("phones");
    let brokers = std::slice::from_ref(&service.mqtt_url);
    let fleet = Fleet::spawn(opts.devices, brokers, &phones, &trust, Some(&login), &FleetOptions::default()).await?;
    println!("release key {}: it signs the binds; the controller and every phone trust it", key.key_id());
    let result = rollouts(&opts, &api, &data_dir, &key).await;
    if opts.keep_running && result.is_ok() {
        println!(
            "\nstill running: try `BINDWAVE_DATA_DIR={} bindwave --controller {} rollout list` (the CLI finds the \
             admin token and the CA there), open the web console at {}/ and sign in with the token in {} (the \
             browser will ask about the development CA, {}), or scrape {}/metrics with that token; Ctrl-C stops",
            data_dir.display(),
            service.http_url,
            service.http_url,
            data_dir.join("admin.token").display(),
            data_dir.join("tls").join("ca.pem").display(),
            service.http_url
        );
        stop.await;
    }
    fleet.stop().await;
    service.stop().await?;
    result
}

async fn rollouts(
    opts: &DemoOptions,
    api: &ApiClient,
    data_dir: &std::path::Path,
    key: &SigningKey,
) -> Result<(), ControllerError> {
    let started = Instant::now();
    let bar = progress_bar(opts.devices as u64, "fleet");
    loop {
        let online = api.devices().await?.iter().filter(|d| d.online && d.hello.is_some()).count();
        bar.set_position(online as u64);
        if online >= opts.devices {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bar.finish_and_clear();
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

    let payload: Vec<u8> = (0..64 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let waves = |sizes: &[&str]| -> Vec<WaveSpec> {
        sizes
            .iter()
            .filter_map(|s| s.parse::<WaveSize>().ok())
            .map(|size| WaveSpec { size, gates: Default::default(), schedule: Default::default() })
            .collect()
    };
    let gates = Gates { failure_min_finished: 3, device_timeout_secs: 120, ..Gates::default() };
    let binds: [(&str, &str, Option<Vec<HardwareLevel>>, bool); 3] = [
        ("a bind for hardware levels 3 and 4", "V3 R3.18.0", Some(vec![HardwareLevel(3), HardwareLevel(4)]), false),
        ("a bind without the hardware-level field", "V3 R4.2.0", None, false),
        ("a bind corrupted on the download server", "V3 R4.3.0", None, true),
    ];
    let mut summaries = Vec::new();
    for (what, version, levels, corrupt) in binds {
        let bytes = signed_bind(version.parse()?, levels.clone(), &payload, key)?;
        let image = api.add_image_bytes(bytes).await?;
        if corrupt {
            // A bad mirror: the stored file no longer matches its digest. Every phone will refuse it.
            let path = data_dir.join("images").join(format!("{}.bind", image.sha256));
            let mut stored = std::fs::read(&path).map_err(crate::error::io_err("read", &path))?;
            if let Some(last) = stored.last_mut() {
                *last ^= 0xff;
            }
            std::fs::write(&path, stored).map_err(crate::error::io_err("write", &path))?;
        }
        let spec = RolloutSpec {
            image: image.sha256.to_string(),
            targets: TargetFilter::default(),
            waves: waves(&["5%", "25%", "100%"]),
            gates: gates.clone(),
            schedule: Default::default(),
            timezone: None,
            override_compat: false,
            override_reason: None,
            use_defaults: false,
            seed: Some(7),
        };
        let rollout = api.create_rollout(&RolloutRequest { spec, actor: "demo".into() }).await?;
        let req = crate::api::ActionRequest { actor: "demo".into(), reason: "demo".into() };
        println!("\n{}: {what} ({version}), waves of {}", rollout.id, wave_sizes(&rollout.waves));
        let t0 = Instant::now();
        let id = rollout.id.to_string();
        api.operate(&id, crate::engine::Action::Start, &req).await?;
        let bar = progress_bar(opts.devices as u64, &id);
        let status = loop {
            let s = api.rollout_counts(&id).await?;
            let done = opts.devices - s.open();
            bar.set_position(done as u64);
            bar.set_message(state_line(&s.rollout.state, s.rollout.waves.len()));
            if settled(&s) || t0.elapsed() > Duration::from_secs(300) {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        bar.finish_and_clear();
        println!("{}: {}", status.rollout.id, state_line(&status.rollout.state, status.rollout.waves.len()));
        summaries.push((status, t0.elapsed()));
    }

    println!("\nsummary");
    let mut t = Table::new([
        "ROLLOUT",
        "BIND",
        "HW FIELD",
        "STATE",
        "DEVICES",
        "ACCEPTED",
        "REJECTED HW",
        "REJECTED SW",
        "FAILED",
        "NEVER SENT",
        "TIME",
    ]);
    for (s, elapsed) in &summaries {
        let c = |o| s.counts.get(&o).copied().unwrap_or(0);
        t.row([
            s.rollout.id.to_string(),
            s.image.as_ref().map_or("-".into(), |i| i.software_version.to_string()),
            s.image
                .as_ref()
                .and_then(|i| i.hardware_levels.as_ref())
                .map_or("none".into(), |l| l.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")),
            s.rollout.state.name().to_string(),
            s.devices().to_string(),
            c(Outcome::Succeeded).to_string(),
            c(Outcome::RejectedHardware).to_string(),
            c(Outcome::RejectedSoftware).to_string(),
            (c(Outcome::Failed) + c(Outcome::TimedOut)).to_string(),
            (c(Outcome::Pending) + c(Outcome::Cancelled)).to_string(),
            format!("{:.1?}", elapsed),
        ]);
    }
    print!("{t}");
    println!(
        "\nrejected phones kept running their old software, without a restart. The corrupted bind reached only its \
         first wave: the failure gate paused the rollout (`bindwave rollout status`, `bindwave audit`)."
    );
    let unsettled = summaries
        .iter()
        .filter(|(s, _)| !matches!(s.rollout.state, RolloutState::Finished | RolloutState::Paused { .. }))
        .count();
    if unsettled > 0 {
        return Err(ControllerError::BadRequest(format!("{unsettled} rollouts did not settle within 5 minutes")));
    }
    Ok(())
}

fn wave_sizes(waves: &[crate::model::Wave]) -> String {
    waves.iter().map(|w| w.devices.to_string()).collect::<Vec<_>>().join(", ")
}

/// A whole bind in memory, signed by `key`.
fn signed_bind(
    version: SoftwareVersion,
    levels: Option<Vec<HardwareLevel>>,
    payload: &[u8],
    key: &SigningKey,
) -> Result<Vec<u8>, ControllerError> {
    let header = BindHeader::new(version, levels, payload.len() as u64, Sha256::digest(payload).into());
    let mut bytes = sign_header(header, key)?.encode()?;
    bytes.extend_from_slice(payload);
    Ok(bytes)
}
