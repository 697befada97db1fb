//! The `bindwave` command line: the service (`serve`), the operators' commands, and the demo.

use std::net::SocketAddr;
use std::path::PathBuf;

use bindwave_proto::SoftwareVersion;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::broker::BrokerConfig;
use crate::client::ApiClient;
use crate::engine::EngineError;
use crate::service::{MqttMode, ServeOptions, Service};
use crate::table::Table;
use crate::{images, ControllerError};

mod rollout;

pub use rollout::{parse_duration, parse_ratio, settled, state_line, RolloutArgs, RolloutCmd};

/// The exit codes of `bindwave`, as `bindwave --help` and the README document them.
pub mod exit {
    /// It worked.
    pub const OK: u8 = 0;
    /// Something failed; the message says what.
    pub const ERROR: u8 = 1;
    /// A wrong flag or value, or an invalid config file (clap uses 2 for usage errors too).
    pub const USAGE: u8 = 2;
    /// The controller is not reachable.
    pub const UNREACHABLE: u8 = 3;
    /// No such rollout, image or device.
    pub const NOT_FOUND: u8 = 4;
    /// The controller refused the action in the rollout's present state (resume a finished rollout, say).
    pub const REFUSED: u8 = 5;
}

/// The exit code for an error.
pub fn exit_code(e: &ControllerError) -> u8 {
    match e {
        ControllerError::Unreachable { .. } => exit::UNREACHABLE,
        ControllerError::Engine(
            EngineError::UnknownImage(_) | EngineError::UnknownRollout(_) | EngineError::UnknownDevice(_),
        ) => exit::NOT_FOUND,
        ControllerError::Api { status: 404, .. } => exit::NOT_FOUND,
        ControllerError::Engine(EngineError::InvalidAction { .. }) | ControllerError::Api { status: 409, .. } => {
            exit::REFUSED
        }
        ControllerError::Config { .. } | ControllerError::ConfigProblems { .. } => exit::USAGE,
        _ => exit::ERROR,
    }
}

#[derive(Parser)]
#[command(
    name = "bindwave",
    version,
    about = "Roll firmware binds out to desk-phone fleets in staged, verified rollouts.",
    after_help = concat!(
        "Examples:\n",
        "  bindwave demo                      # a rollout to a simulated fleet on this machine: start here\n",
        "  bindwave serve --config /etc/bindwave/bindwave.toml\n",
        "  bindwave rollout create --image 3fa2c1 --all --waves 1%,10%,100% --start\n",
        "  bindwave rollout watch r1\n\n",
        "Exit codes:\n",
        "  0  it worked\n",
        "  1  something failed (the message says what)\n",
        "  2  a wrong flag or value, or an invalid config file\n",
        "  3  the controller is not reachable (set --controller or BINDWAVE_CONTROLLER)\n",
        "  4  no such rollout, image or device\n",
        "  5  the action is refused in the rollout's present state"
    )
)]
pub struct Cli {
    /// The controller's HTTP address, for the operator commands.
    #[arg(long, global = true, env = "BINDWAVE_CONTROLLER", default_value = "http://127.0.0.1:8080")]
    pub controller: String,
    /// Who you are, for the audit log (default: $USER@hostname).
    #[arg(long, global = true, env = "BINDWAVE_ACTOR")]
    pub actor: Option<String>,
    /// Log level or filter (e.g. info, debug, bindwave_controller=debug); also RUST_LOG or BINDWAVE_LOG_LEVEL.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log lines for people (text) or JSON objects for log shippers; also BINDWAVE_LOG_FORMAT.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<crate::config::LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the controller: embedded MQTT broker (or an external one), store, HTTP API, metrics.
    #[command(after_help = "Examples:\n  bindwave serve --data-dir /var/lib/bindwave\n  \
        bindwave serve --config /etc/bindwave/bindwave.toml --log-format json\n  \
        bindwave serve --broker mqtt://mosquitto.example:1883 --http-listen 0.0.0.0:8080 \
        --public-url http://bindwave.example:8080\n\n\
        Every setting comes from its flag, else its environment variable (BINDWAVE_DATA_DIR, BINDWAVE_HTTP_LISTEN, \
        BINDWAVE_PUBLIC_URL, BINDWAVE_MQTT_LISTEN, BINDWAVE_BROKER, BINDWAVE_LOG_LEVEL, BINDWAVE_LOG_FORMAT), else \
        the --config file (the same names in lowercase, without BINDWAVE_), else its default.")]
    Serve(ServeArgs),
    /// Check a controller config file and show the settings it gives, and where each comes from.
    #[command(subcommand, after_help = "Examples:\n  bindwave config check --config /etc/bindwave/bindwave.toml")]
    Config(ConfigCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) for bindwave or bindwave-agent.
    #[command(after_help = "Examples:\n  bindwave completions bash > /etc/bash_completion.d/bindwave\n  \
        bindwave completions zsh --agent > ~/.zfunc/_bindwave-agent")]
    Completions {
        shell: clap_complete::Shell,
        /// For bindwave-agent instead of bindwave.
        #[arg(long)]
        agent: bool,
    },
    /// Write man pages for bindwave, bindwave-agent and each of their subcommands into a directory.
    #[command(
        after_help = "Examples:\n  bindwave man /usr/local/share/man/man1\n  bindwave man target/man && man -l target/man/bindwave-rollout-create.1"
    )]
    Man {
        /// The directory to write the pages into (created if missing).
        dir: PathBuf,
    },
    /// Build, inspect and upload bind files.
    #[command(
        subcommand,
        after_help = "Examples:\n  bindwave image pack fw.img --version 'V3 R3.18.0' --hardware-levels 3,4 -o fw.bind\n  \
        bindwave image add fw.bind\n  bindwave image list"
    )]
    Image(ImageCmd),
    /// The devices that said hello to the controller.
    #[command(subcommand, after_help = "Examples:\n  bindwave device list\n  bindwave device list -o yaml")]
    Device(DeviceCmd),
    /// Plan, create, start, watch and steer rollouts.
    #[command(
        subcommand,
        after_help = "Examples:\n  bindwave rollout plan --image 3fa2c1 --all --waves 1%,10%,100%\n  \
        bindwave rollout create --image 3fa2c1 --all --waves 1%,10%,100% --start\n  bindwave rollout watch r1\n  \
        bindwave rollout pause r1 --reason \"calls drop after the update\""
    )]
    Rollout(RolloutCmd),
    /// Emergency stop: pause every rollout under way (or abort them with --abort).
    #[command(after_help = "Examples:\n  bindwave stop --reason \"phones reboot-looping in site B\"")]
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
    #[cfg(feature = "sim")]
    #[command(
        after_help = "Examples:\n  bindwave simulate --devices 5000 --broker mqtt://127.0.0.1:1883 --state-dir /tmp/fleet"
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
    #[cfg(feature = "sim")]
    #[command(after_help = "Examples:\n  bindwave demo --devices 1000")]
    Demo(DemoArgs),
}

impl Command {
    /// Commands that run until stopped (a service, a fleet), rather than read and print.
    pub fn runs_until_stopped(&self) -> bool {
        match self {
            Command::Serve(_) => true,
            #[cfg(feature = "sim")]
            Command::Simulate { .. } | Command::Demo(_) => true,
            _ => false,
        }
    }
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// A TOML file with any of the settings below (see `bindwave config check`).
    #[arg(long, env = "BINDWAVE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the store and images live [default: bindwave-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The HTTP API and bind downloads [default: 127.0.0.1:8080].
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// The embedded MQTT broker's address, ignored with --broker [default: 127.0.0.1:1883].
    #[arg(long)]
    pub mqtt_listen: Option<SocketAddr>,
    /// Use this external broker (mqtt://host:port) instead of the embedded one.
    #[arg(long)]
    pub broker: Option<String>,
    /// The URL agents download binds from [default: http://<http-listen>].
    #[arg(long)]
    pub public_url: Option<String>,
}

impl ServeArgs {
    /// The settings these flags, the environment and the config file give.
    pub fn settings(
        &self,
        log_level: Option<String>,
        log_format: Option<crate::config::LogFormat>,
    ) -> Result<crate::config::ServeSettings, ControllerError> {
        let flags = crate::config::Flags {
            data_dir: self.data_dir.clone(),
            http_listen: self.http_listen,
            public_url: self.public_url.clone(),
            mqtt_listen: self.mqtt_listen,
            broker: self.broker.clone(),
            log_level,
            log_format,
        };
        crate::config::ServeSettings::load(self.config.as_deref(), &flags)
    }
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Explain what is wrong in a config file (every problem, with a hint), or show the settings it gives.
    #[command(after_help = "Examples:\n  bindwave config check --config /etc/bindwave/bindwave.toml\n  \
        BINDWAVE_HTTP_LISTEN=0.0.0.0:9000 bindwave config check --config bindwave.toml -o json\n\n\
        Exit codes: 0 the config is valid, 2 it is not.")]
    Check {
        /// The file to check (also BINDWAVE_CONFIG); without it, the environment and defaults are shown.
        #[arg(long, env = "BINDWAVE_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
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
    #[command(after_help = "Examples:\n  bindwave image inspect fw.bind -o json")]
    Inspect {
        file: PathBuf,
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Upload a bind to the controller (it is checked on both ends).
    #[command(after_help = "Examples:\n  bindwave image add fw.bind")]
    Add { file: PathBuf },
    /// The controller's images.
    #[command(after_help = "Examples:\n  bindwave image list\n  bindwave image list -o json")]
    List {
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Subcommand)]
pub enum DeviceCmd {
    /// List devices with their hardware level and running software.
    #[command(after_help = "Examples:\n  bindwave device list -o json")]
    List {
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[cfg(feature = "sim")]
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

/// How a reading command prints: a table for people, JSON or YAML for scripts (the API's own types).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

fn parse_version(s: &str) -> Result<SoftwareVersion, String> {
    s.parse().map_err(|e: bindwave_proto::ProtoError| e.to_string())
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), ControllerError> {
    match cli.command {
        Command::Serve(args) => serve(args.settings(cli.log_level, cli.log_format)?).await,
        Command::Config(ConfigCmd::Check { config, output }) => config_check(config.as_deref(), output),
        Command::Completions { shell, agent } => {
            let (mut cmd, name) = match agent {
                #[cfg(feature = "sim")]
                true => (<bindwave_agent::cli::Cli as clap::CommandFactory>::command(), "bindwave-agent"),
                #[cfg(not(feature = "sim"))]
                true => return Err(ControllerError::BadRequest(AGENT_DOCS_NEED_SIM.into())),
                false => (<Cli as clap::CommandFactory>::command(), "bindwave"),
            };
            clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => man_pages(&dir),
        #[cfg(feature = "sim")]
        Command::Simulate { devices, broker, state_dir } => {
            crate::raise_open_files_limit();
            let fleet = crate::fleet::Fleet::spawn(devices, &broker, &state_dir)?;
            eprintln!("{devices} simulated phones on {broker}, state in {}; Ctrl-C stops them", state_dir.display());
            shutdown_signal().await;
            fleet.stop().await;
            Ok(())
        }
        #[cfg(feature = "sim")]
        Command::Demo(args) => {
            let opts = crate::demo::DemoOptions {
                devices: args.devices as usize,
                http_listen: args.http_listen,
                keep_running: args.keep_running,
            };
            crate::demo::run(opts, shutdown_signal()).await
        }
        Command::Image(cmd) => image(cmd, &cli.controller).await,
        Command::Device(DeviceCmd::List { output }) => {
            let devices = ApiClient::new(&cli.controller)?.devices().await?;
            emit(&devices, output, |d| print_devices(d))
        }
        Command::Rollout(cmd) => rollout::run(cmd, &cli.controller, &actor(cli.actor)).await,
        Command::Stop { reason, abort } => {
            let api = ApiClient::new(&cli.controller)?;
            let r = api.stop(&crate::api::StopRequest { actor: actor(cli.actor), reason, abort }).await?;
            let what = if abort { "aborted" } else { "paused" };
            if r.stopped.is_empty() {
                println!("no rollout was under way");
            } else {
                let stopped: Vec<String> = r.stopped.iter().map(ToString::to_string).collect();
                println!("{what}: {}", stopped.join(", "));
            }
            Ok(())
        }
        Command::Audit { rollout, output } => {
            let entries = ApiClient::new(&cli.controller)?.audit(rollout.as_deref()).await?;
            emit(&entries, output, |entries| {
                let mut t = Table::new(["SEQ", "TIME (UTC)", "ACTOR", "ACTION", "ROLLOUT", "REASON"]);
                for a in entries {
                    t.row([
                        a.seq.to_string(),
                        rollout::time(a.at),
                        a.actor.clone(),
                        a.action.clone(),
                        a.rollout.map(|r| r.to_string()).unwrap_or_default(),
                        a.reason.clone(),
                    ]);
                }
                print!("{t}");
            })
        }
    }
}

async fn serve(settings: crate::config::ServeSettings) -> Result<(), ControllerError> {
    let mqtt = match settings.broker {
        Some(url) => MqttMode::External(url),
        None => MqttMode::Embedded(BrokerConfig { listen: settings.mqtt_listen, ..BrokerConfig::default() }),
    };
    crate::raise_open_files_limit();
    let service = Service::start(ServeOptions {
        data_dir: settings.data_dir,
        http_listen: settings.http_listen,
        mqtt,
        public_url: settings.public_url,
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
            emit(&i, output, |i| {
                let mut t = Table::new(["FIELD", "VALUE"]);
                t.row(["software_version".into(), i.software_version.to_string()]);
                t.row(["hardware_levels".into(), levels_text(i.hardware_levels.as_deref())]);
                t.row(["payload_length".into(), i.payload_len.to_string()]);
                t.row(["payload_sha256".into(), i.payload_sha256.clone()]);
                t.row(["file_size".into(), i.file_size.to_string()]);
                t.row(["file_sha256".into(), i.file_sha256.clone()]);
                t.row(["signed".into(), if i.signed { "yes" } else { "no" }.into()]);
                print!("{t}");
            })
        }
        ImageCmd::Add { file } => {
            // Check locally first: a clear error without an upload.
            let f = file.clone();
            tokio::task::spawn_blocking(move || images::inspect(&f))
                .await
                .map_err(|e| ControllerError::BadRequest(e.to_string()))??;
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            let bar = byte_bar(size, "upload");
            let progress = bar.clone();
            let image = ApiClient::new(controller)?.add_image(&file, move |n| progress.inc(n)).await;
            bar.finish_and_clear();
            println!("{}", image?.sha256);
            Ok(())
        }
        ImageCmd::List { output } => {
            let list = ApiClient::new(controller)?.images().await?;
            emit(&list, output, |list| {
                let mut t = Table::new(["SHA256", "VERSION", "HW LEVELS", "SIZE"]);
                for i in list {
                    t.row([
                        i.sha256.to_string(),
                        i.software_version.to_string(),
                        levels_text(i.hardware_levels.as_deref()),
                        i.size.to_string(),
                    ]);
                }
                print!("{t}");
            })
        }
    }
}

fn print_devices(devices: &[crate::model::Device]) {
    let mut t = Table::new(["DEVICE", "ONLINE", "MODEL", "PART NUMBER", "HW", "SOFTWARE", "MINIMUM"]);
    for d in devices {
        let h = d.hello.as_ref();
        t.row([
            d.id.to_string(),
            if d.online { "yes" } else { "no" }.into(),
            h.and_then(|h| h.model.clone()).unwrap_or_else(|| "-".into()),
            h.map_or("-".into(), |h| h.part_number.clone()),
            h.map_or("-".into(), |h| h.hardware_level.to_string()),
            h.map_or("-".into(), |h| h.software_version.to_string()),
            h.map_or("-".into(), |h| h.minimum_software_version.to_string()),
        ]);
    }
    print!("{t}");
}

fn levels_text(levels: Option<&[bindwave_proto::HardwareLevel]>) -> String {
    levels.map_or("-".into(), |l| l.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
}

/// `bindwave config check`: every problem of the file, or the effective settings and their sources.
fn config_check(path: Option<&std::path::Path>, output: Format) -> Result<(), ControllerError> {
    use crate::config::{load_file, ServeFile, ServeSettings};
    let file = match path {
        Some(p) => load_file(p),
        None => Ok(ServeFile::default()),
    };
    let settings = file.and_then(|f| ServeSettings::resolve(&crate::config::Flags::default(), &f));
    let shown = path.map_or("(no file)".to_string(), |p| p.display().to_string());
    match settings {
        Err(problems) => {
            if output == Format::Table {
                for p in &problems {
                    eprintln!("  {p}");
                }
            } else {
                emit(&serde_json::json!({ "valid": false, "config": shown, "problems": problems }), output, |_| {})?;
            }
            Err(ControllerError::ConfigProblems { path: shown, count: problems.len() })
        }
        Ok(s) => {
            let value = serde_json::to_value(&s).unwrap_or_default();
            let rows: Vec<_> = crate::config::KEYS
                .iter()
                .map(|(key, var, default)| {
                    let source = s.sources.get(key).copied().unwrap_or(crate::config::Source::Default);
                    let v = match &value[*key] {
                        serde_json::Value::Null => default.to_string(),
                        serde_json::Value::String(t) => t.clone(),
                        other => other.to_string(),
                    };
                    serde_json::json!({ "key": key, "value": v, "source": source, "env": var })
                })
                .collect();
            emit(&serde_json::json!({ "valid": true, "config": shown, "settings": rows }), output, |_| {
                println!("{shown}: valid");
                let mut t = Table::new(["KEY", "VALUE", "FROM", "ENVIRONMENT"]);
                for r in &rows {
                    let cell = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                    t.row([cell("key"), cell("value"), cell("source"), cell("env")]);
                }
                print!("{t}");
            })
        }
    }
}

/// The agent's man pages and completions come from its command line, which a build without the simulated
/// fleet does not link.
#[cfg(not(feature = "sim"))]
const AGENT_DOCS_NEED_SIM: &str =
    "this bindwave is built without the simulated fleet (feature `sim`), which carries the agent's command line; \
     use a default build for the agent's completions";

/// `bindwave man DIR`: a page per command and subcommand, for bindwave and (with the simulated fleet built
/// in) bindwave-agent.
fn man_pages(dir: &std::path::Path) -> Result<(), ControllerError> {
    std::fs::create_dir_all(dir).map_err(crate::error::io_err("create", dir))?;
    fn write(cmd: clap::Command, name: String, dir: &std::path::Path, n: &mut usize) -> Result<(), ControllerError> {
        let cmd = cmd.name(name.clone());
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut out).map_err(crate::error::io_err("render", &path))?;
        std::fs::write(&path, out).map_err(crate::error::io_err("write", &path))?;
        *n += 1;
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            write(sub.clone(), format!("{name}-{}", sub.get_name()), dir, n)?;
        }
        Ok(())
    }
    let mut n = 0;
    let mut bindwave = <Cli as clap::CommandFactory>::command();
    bindwave.build();
    write(bindwave, "bindwave".into(), dir, &mut n)?;
    #[cfg(feature = "sim")]
    {
        let mut agent = <bindwave_agent::cli::Cli as clap::CommandFactory>::command();
        agent.build();
        write(agent, "bindwave-agent".into(), dir, &mut n)?;
    }
    println!("wrote {n} man pages to {}", dir.display());
    Ok(())
}

/// A progress bar on stderr for a long operation (`{prefix} [=====>    ] pos/len msg`); hidden when stderr is
/// not a terminal, so pipes and logs stay clean.
pub(crate) fn progress_bar(len: u64, prefix: &str) -> indicatif::ProgressBar {
    progress_with(len, prefix, "{prefix} [{bar:30}] {pos}/{len} {msg}")
}

/// The same, counting bytes.
pub(crate) fn byte_bar(len: u64, prefix: &str) -> indicatif::ProgressBar {
    progress_with(len, prefix, "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}")
}

fn progress_with(len: u64, prefix: &str, template: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar
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

/// Prints what a reading command read: as JSON or YAML, or as the table `table` prints.
pub(crate) fn emit<T: serde::Serialize>(
    value: &T,
    format: Format,
    table: impl FnOnce(&T),
) -> Result<(), ControllerError> {
    let bad = |e: String| ControllerError::BadRequest(format!("cannot print the answer: {e}"));
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value).map_err(|e| bad(e.to_string()))?),
        Format::Yaml => print!("{}", yaml_serde::to_string(value).map_err(|e| bad(e.to_string()))?),
        Format::Table => table(value),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command and subcommand shows examples in its --help.
    #[test]
    fn every_command_has_examples() {
        fn walk(cmd: &clap::Command, path: String, missing: &mut Vec<String>) {
            let help = cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default();
            if !help.contains("Examples:\n  bindwave") {
                missing.push(path.clone());
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "bindwave".into(), &mut missing);
        assert!(missing.is_empty(), "no examples in the help of: {missing:?}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
