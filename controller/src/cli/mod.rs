//! The `bindwave` command line: the service (`serve`), the operators' commands, and the demo.

use std::net::SocketAddr;
use std::path::PathBuf;

use bindwave_proto::SoftwareVersion;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::broker::BrokerConfig;
use crate::client::ApiClient;
use crate::service::{MqttMode, ServeOptions, Service};
use crate::table::Table;
use crate::{demo, images, ControllerError};

mod rollout;

pub use rollout::{parse_duration, parse_ratio, settled, state_line, RolloutArgs, RolloutCmd};

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
    /// Who you are, for the audit log (default: $USER@hostname).
    #[arg(long, global = true, env = "BINDWAVE_ACTOR")]
    pub actor: Option<String>,
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
    /// Plan, create, start, watch and steer rollouts.
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// Emergency stop: pause every rollout under way (or abort them with --abort).
    #[command(after_help = "Example:\n  bindwave stop --reason \"phones reboot-looping in site B\"")]
    Stop {
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
        /// Abort instead of pause: devices not yet commanded are cancelled for good.
        #[arg(long)]
        abort: bool,
    },
    /// The audit log: every operator action and every gate decision, with its time, actor and reason.
    #[command(after_help = "Examples:\n  bindwave audit\n  bindwave audit --rollout r3 -o json")]
    Audit {
        #[arg(long)]
        rollout: Option<String>,
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Run a simulated fleet (real agents, one MQTT connection each) against a broker until stopped.
    #[command(
        after_help = "Example:\n  bindwave simulate --devices 5000 --broker mqtt://127.0.0.1:1883 --state-dir /tmp/fleet"
    )]
    Simulate {
        #[arg(long, default_value_t = 100)]
        devices: usize,
        /// The broker the controller uses.
        #[arg(long, env = "BINDWAVE_BROKER", default_value = "mqtt://127.0.0.1:1883")]
        broker: String,
        /// Where the phones keep their slots and journals.
        #[arg(long, default_value = "bindwave-fleet")]
        state_dir: PathBuf,
    },
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

#[derive(Args)]
pub struct DemoArgs {
    /// How many simulated phones.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub devices: u32,
    /// Serve the controller's HTTP API and /metrics here (a random local port by default); point Prometheus
    /// at it to watch the demo in Grafana.
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<std::net::SocketAddr>,
    /// After the rollouts, keep the controller and the fleet running until Ctrl-C (to explore the API,
    /// the CLI and the dashboards).
    #[arg(long)]
    pub keep_running: bool,
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
        Command::Simulate { devices, broker, state_dir } => {
            crate::raise_open_files_limit();
            let fleet = crate::fleet::Fleet::spawn(devices, &broker, &state_dir)?;
            eprintln!("{devices} simulated phones on {broker}, state in {}; Ctrl-C stops them", state_dir.display());
            shutdown_signal().await;
            fleet.stop().await;
            Ok(())
        }
        Command::Demo(args) => {
            let opts = demo::DemoOptions {
                devices: args.devices as usize,
                http_listen: args.http_listen,
                keep_running: args.keep_running,
            };
            demo::run(opts, shutdown_signal()).await
        }
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
        Command::Rollout(cmd) => rollout::run(cmd, &cli.controller, &actor(cli.actor)).await,
        Command::Stop { reason, abort } => {
            let api = ApiClient::new(&cli.controller)?;
            let r = api.stop(&crate::api::StopRequest { actor: actor(cli.actor), reason, abort }).await?;
            let what = if abort { "aborted" } else { "paused" };
            if r.stopped.is_empty() {
                println!("no rollout was under way");
            } else {
                println!("{what}: {}", r.stopped.join(", "));
            }
            Ok(())
        }
        Command::Audit { rollout, output } => {
            let entries = ApiClient::new(&cli.controller)?.audit(rollout.as_deref()).await?;
            if output == Format::Json {
                return print_json(&entries);
            }
            let mut t = Table::new(["SEQ", "TIME (UTC)", "ACTOR", "ACTION", "ROLLOUT", "REASON"]);
            for a in entries {
                t.row([
                    a.seq.to_string(),
                    rollout::time(a.at),
                    a.actor,
                    a.action,
                    a.rollout.unwrap_or_default(),
                    a.reason,
                ]);
            }
            print!("{t}");
            Ok(())
        }
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

/// Who runs this command: `--actor`, or `$USER@hostname`.
fn actor(flag: Option<String>) -> String {
    flag.unwrap_or_else(|| {
        let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        if host.is_empty() {
            user
        } else {
            format!("{user}@{host}")
        }
    })
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> Result<(), ControllerError> {
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
