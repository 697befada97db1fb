//! The `bindwave` command line: the service (`serve`), the operators' commands, and the demo.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bindwave_proto::SoftwareVersion;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::api::{parse_device_list, CreateRollout, RolloutStatus};
use crate::broker::BrokerConfig;
use crate::client::ApiClient;
use crate::engine::Selection;
use crate::model::{JobPhase, Outcome};
use crate::service::{MqttMode, ServeOptions, Service};
use crate::table::Table;
use crate::{demo, images, ControllerError};

/// Exit codes: 0 success, 1 an error, 2 a usage error (wrong flag or value), 3 the controller is not
/// reachable.
pub const EXIT_UNREACHABLE: u8 = 3;

#[derive(Parser)]
#[command(
    name = "bindwave",
    version,
    about = "Roll firmware binds out to desk-phone fleets in staged, verified rollouts.",
    after_help = "Start here: `bindwave demo` runs a rollout to a simulated fleet on this machine."
)]
pub struct Cli {
    /// The controller's HTTP address, for the operator commands.
    #[arg(long, global = true, env = "BINDWAVE_CONTROLLER", default_value = "http://127.0.0.1:8080")]
    pub controller: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the controller: embedded MQTT broker (or an external one), store, HTTP API, metrics.
    #[command(after_help = "Examples:\n  bindwave serve --data-dir /var/lib/bindwave\n  \
        bindwave serve --broker mqtt://mosquitto.example:1883 --http-listen 0.0.0.0:8080 \
        --public-url http://bindwave.example:8080")]
    Serve(ServeArgs),
    /// Build, inspect and upload bind files.
    #[command(subcommand)]
    Image(ImageCmd),
    /// The devices that said hello to the controller.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Create, start and follow rollouts.
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// A rollout to a simulated fleet, on an embedded broker, in a temporary directory.
    #[command(after_help = "Example:\n  bindwave demo --devices 1000")]
    Demo(DemoArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Where the store and images live.
    #[arg(long, env = "BINDWAVE_DATA_DIR", default_value = "bindwave-data")]
    pub data_dir: PathBuf,
    /// The HTTP API and bind downloads.
    #[arg(long, env = "BINDWAVE_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    /// The embedded MQTT broker's address (ignored with --broker).
    #[arg(long, env = "BINDWAVE_MQTT_LISTEN", default_value = "127.0.0.1:1883")]
    pub mqtt_listen: SocketAddr,
    /// Use this external broker (mqtt://host:port) instead of the embedded one.
    #[arg(long, env = "BINDWAVE_BROKER")]
    pub broker: Option<String>,
    /// The URL agents download binds from (default: http://<http-listen>).
    #[arg(long, env = "BINDWAVE_PUBLIC_URL")]
    pub public_url: Option<String>,
}

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Build a bind from a payload and header fields.
    #[command(
        after_help = "Examples:\n  bindwave image pack fw.img --version 'V3 R3.18.0' --hardware-levels 3,4 -o fw.bind\n  \
        bindwave image pack fw.img --version 'V3 R3.18.0' -o fw-any-hw.bind"
    )]
    Pack {
        /// The firmware payload.
        payload: PathBuf,
        /// The payload's software version, e.g. "V3 R3.18.0".
        #[arg(long, value_parser = parse_version)]
        version: SoftwareVersion,
        /// Supported hardware levels, comma separated. Without it, phones decide by minimum software level.
        #[arg(long, value_parser = images::parse_levels)]
        hardware_levels: Option<std::vec::Vec<bindwave_proto::HardwareLevel>>,
        /// Where to write the bind.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Print a bind's header and check its payload digest.
    #[command(after_help = "Example:\n  bindwave image inspect fw.bind -o json")]
    Inspect {
        file: PathBuf,
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Upload a bind to the controller (it is checked on both ends).
    #[command(after_help = "Example:\n  bindwave image add fw.bind")]
    Add { file: PathBuf },
    /// The controller's images.
    List {
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Subcommand)]
pub enum DeviceCmd {
    /// List devices with their hardware level and running software.
    #[command(after_help = "Example:\n  bindwave device list -o json")]
    List {
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Subcommand)]
pub enum RolloutCmd {
    /// Create a rollout of an image to devices (it does not start until `rollout start`).
    #[command(after_help = "Examples:\n  bindwave rollout create --image 3fa2c1 --all\n  \
        bindwave rollout create --image 3fa2c1 --devices phone-0001,phone-0002 --override --start")]
    Create {
        /// The image's SHA-256 or a unique prefix (at least 6 characters).
        #[arg(long)]
        image: String,
        /// Device ids, comma separated.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        devices: Option<String>,
        /// Every device the controller knows.
        #[arg(long)]
        all: bool,
        /// Install even where the phone's compatibility rule says no (recorded per device).
        #[arg(long = "override")]
        override_compat: bool,
        /// Start it at once.
        #[arg(long)]
        start: bool,
    },
    /// Send a created rollout's commands.
    Start { id: String },
    /// A rollout's counts and every device's outcome and reason.
    #[command(after_help = "Examples:\n  bindwave rollout status r1\n  bindwave rollout status r1 --wait -o json")]
    Status {
        id: String,
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
        /// Wait until every device has an outcome.
        #[arg(long)]
        wait: bool,
    },
    /// All rollouts with their counts.
    List {
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Args)]
pub struct DemoArgs {
    /// How many simulated phones.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub devices: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

fn parse_version(s: &str) -> Result<SoftwareVersion, String> {
    s.parse().map_err(|e: bindwave_proto::ProtoError| e.to_string())
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), ControllerError> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Demo(args) => demo::run(demo::DemoOptions { devices: args.devices as usize }).await,
        Command::Image(cmd) => image(cmd, &cli.controller).await,
        Command::Device(DeviceCmd::List { output }) => {
            let devices = ApiClient::new(&cli.controller)?.devices().await?;
            if output == Format::Json {
                return print_json(&devices);
            }
            let mut t = Table::new(["DEVICE", "ONLINE", "PART NUMBER", "HW", "SOFTWARE", "MINIMUM"]);
            for d in devices {
                let h = d.hello.as_ref();
                t.row([
                    d.id.to_string(),
                    if d.online { "yes" } else { "no" }.into(),
                    h.map_or("-".into(), |h| h.part_number.clone()),
                    h.map_or("-".into(), |h| h.hardware_level.to_string()),
                    h.map_or("-".into(), |h| h.software_version.to_string()),
                    h.map_or("-".into(), |h| h.minimum_software_version.to_string()),
                ]);
            }
            print!("{t}");
            Ok(())
        }
        Command::Rollout(cmd) => rollout(cmd, &cli.controller).await,
    }
}

async fn serve(args: ServeArgs) -> Result<(), ControllerError> {
    let mqtt = match args.broker {
        Some(url) => MqttMode::External(url),
        None => MqttMode::Embedded(BrokerConfig { listen: args.mqtt_listen, ..BrokerConfig::default() }),
    };
    crate::raise_open_files_limit();
    let service = Service::start(ServeOptions {
        data_dir: args.data_dir,
        http_listen: args.http_listen,
        mqtt,
        public_url: args.public_url,
    })
    .await?;
    eprintln!("bindwave controller: HTTP on http://{}, MQTT on {}", service.http_addr, service.mqtt_url);
    service.run_until(shutdown_signal()).await
}

async fn image(cmd: ImageCmd, controller: &str) -> Result<(), ControllerError> {
    match cmd {
        ImageCmd::Pack { payload, version, hardware_levels, output } => {
            let header = tokio::task::spawn_blocking(move || images::pack(&payload, version, hardware_levels, &output))
                .await
                .map_err(|e| ControllerError::BadRequest(e.to_string()))??;
            let levels = header.hardware_levels.as_ref().map_or("none (decided by software level)".to_string(), |l| {
                l.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
            });
            println!(
                "packed {} ({} payload bytes), hardware levels: {levels}",
                header.software_version, header.payload_len
            );
            Ok(())
        }
        ImageCmd::Inspect { file, output } => {
            let i = tokio::task::spawn_blocking(move || images::inspect(&file))
                .await
                .map_err(|e| ControllerError::BadRequest(e.to_string()))??;
            if output == Format::Json {
                return print_json(&i);
            }
            let mut t = Table::new(["FIELD", "VALUE"]);
            t.row(["software_version".into(), i.software_version.to_string()]);
            t.row(["hardware_levels".into(), levels_text(i.hardware_levels.as_deref())]);
            t.row(["payload_length".into(), i.payload_len.to_string()]);
            t.row(["payload_sha256".into(), i.payload_sha256.clone()]);
            t.row(["file_size".into(), i.file_size.to_string()]);
            t.row(["file_sha256".into(), i.file_sha256.clone()]);
            t.row(["signed".into(), if i.signed { "yes" } else { "no" }.into()]);
            print!("{t}");
            Ok(())
        }
        ImageCmd::Add { file } => {
            // Check locally first: a clear error without an upload.
            let f = file.clone();
            tokio::task::spawn_blocking(move || images::inspect(&f))
                .await
                .map_err(|e| ControllerError::BadRequest(e.to_string()))??;
            let image = ApiClient::new(controller)?.add_image(&file).await?;
            println!("{}", image.sha256);
            Ok(())
        }
        ImageCmd::List { output } => {
            let list = ApiClient::new(controller)?.images().await?;
            if output == Format::Json {
                return print_json(&list);
            }
            let mut t = Table::new(["SHA256", "VERSION", "HW LEVELS", "SIZE"]);
            for i in list {
                t.row([
                    i.sha256.clone(),
                    i.software_version.to_string(),
                    levels_text(i.hardware_levels.as_deref()),
                    i.size.to_string(),
                ]);
            }
            print!("{t}");
            Ok(())
        }
    }
}

fn levels_text(levels: Option<&[bindwave_proto::HardwareLevel]>) -> String {
    levels.map_or("-".into(), |l| l.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
}

async fn rollout(cmd: RolloutCmd, controller: &str) -> Result<(), ControllerError> {
    let api = ApiClient::new(controller)?;
    match cmd {
        RolloutCmd::Create { image, devices, all: _, override_compat, start } => {
            let devices = match devices {
                Some(list) => Selection::List(parse_device_list(&list)?),
                None => Selection::All,
            };
            let r = api.create_rollout(&CreateRollout { image, devices, override_compat }).await?;
            if start {
                api.start_rollout(&r.id).await?;
            }
            println!("{}", r.id);
            Ok(())
        }
        RolloutCmd::Start { id } => {
            let r = api.start_rollout(&id).await?;
            println!("started {} ({} devices)", r.id, r.devices.len());
            Ok(())
        }
        RolloutCmd::Status { id, output, wait } => {
            let mut status = api.rollout(&id).await?;
            if wait {
                let bar = progress_bar(status.jobs.len());
                while status.counts.get(&Outcome::InProgress).copied().unwrap_or(0) > 0
                    || status.counts.get(&Outcome::Pending).copied().unwrap_or(0) > 0
                {
                    update_bar(&bar, &status);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    status = api.rollout(&id).await?;
                }
                bar.finish_and_clear();
            }
            if output == Format::Json {
                return print_json(&status);
            }
            print_status(&status);
            Ok(())
        }
        RolloutCmd::List { output } => {
            let list = api.rollouts().await?;
            if output == Format::Json {
                return print_json(&list);
            }
            let mut t = Table::new([
                "ROLLOUT",
                "STATE",
                "IMAGE",
                "DEVICES",
                "SUCCEEDED",
                "REJ HW",
                "REJ SW",
                "FAILED",
                "IN PROGRESS",
            ]);
            for s in list {
                let c = |o| s.counts.get(&o).copied().unwrap_or(0).to_string();
                t.row([
                    s.rollout.id.clone(),
                    s.rollout.state.as_str().to_string(),
                    s.rollout.image[..12.min(s.rollout.image.len())].to_string(),
                    s.rollout.devices.len().to_string(),
                    c(Outcome::Succeeded),
                    c(Outcome::RejectedHardware),
                    c(Outcome::RejectedSoftware),
                    c(Outcome::Failed),
                    (s.counts.get(&Outcome::InProgress).unwrap_or(&0) + s.counts.get(&Outcome::Pending).unwrap_or(&0))
                        .to_string(),
                ]);
            }
            print!("{t}");
            Ok(())
        }
    }
}

pub(crate) fn progress_bar(len: usize) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

pub(crate) fn update_bar(bar: &indicatif::ProgressBar, status: &RolloutStatus) {
    let c = |o| status.counts.get(&o).copied().unwrap_or(0);
    let done = c(Outcome::Succeeded) + c(Outcome::RejectedHardware) + c(Outcome::RejectedSoftware) + c(Outcome::Failed);
    bar.set_prefix(status.rollout.id.clone());
    bar.set_position(done as u64);
    bar.set_message(format!(
        "ok {} | rejected hw {} sw {} | failed {}",
        c(Outcome::Succeeded),
        c(Outcome::RejectedHardware),
        c(Outcome::RejectedSoftware),
        c(Outcome::Failed)
    ));
}

fn print_status(s: &RolloutStatus) {
    let r = &s.rollout;
    println!(
        "rollout {}  state {}  image {}  override {}",
        r.id,
        r.state.as_str(),
        s.image.as_ref().map_or(r.image.clone(), |i| format!("{} ({})", i.software_version, &i.sha256[..12])),
        if r.override_compat { "yes" } else { "no" }
    );
    let counts: Vec<String> =
        Outcome::ALL.iter().map(|o| format!("{} {}", o.as_str(), s.counts.get(o).unwrap_or(&0))).collect();
    println!("{}\n", counts.join("  "));
    let mut t = Table::new(["DEVICE", "OUTCOME", "RUNNING", "REASON"]);
    for j in &s.jobs {
        let (running, reason) = match &j.phase {
            JobPhase::Succeeded { running_version, override_used } => (
                running_version.to_string(),
                if *override_used { "installed with override".into() } else { String::new() },
            ),
            JobPhase::Rejected { reason, running_version } | JobPhase::Failed { reason, running_version } => (
                running_version.as_ref().map_or("-".into(), ToString::to_string),
                format!("{}: {reason}", reason.code()),
            ),
            JobPhase::Running { state, progress } => {
                ("-".into(), progress.map_or(state.to_string(), |p| format!("{state} {p}%")))
            }
            JobPhase::Pending | JobPhase::Sent => ("-".into(), String::new()),
        };
        t.row([j.device.to_string(), j.phase.outcome().as_str().into(), running, reason]);
    }
    print!("{t}");
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), ControllerError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| ControllerError::BadRequest(e.to_string()))?;
    println!("{text}");
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
