//! The `bindwave` command line: the service (`serve`), the operators' commands, and the demo.

use std::net::SocketAddr;
use std::path::PathBuf;

use bindwave_proto::SoftwareVersion;
use clap::{Args, Parser, Subcommand};

use crate::client::ApiClient;
use crate::table::Table;
use crate::{images, ControllerError};

mod backup;
mod certs;
mod config_check;
mod device;
mod docs;
pub mod exit;
mod image;
pub mod output;
pub mod rollout;
mod serve;

pub use serve::shutdown_signal;
#[cfg(feature = "sim")]
mod simulate;
mod token;

pub use exit::exit_code;
use output::emit;
pub use output::Format;
pub use rollout::{parse_duration, parse_ratio, settled, state_line, RolloutArgs, RolloutCmd};

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
    /// The controller's address, for the operator commands (http:// for a controller in lab mode).
    #[arg(long, global = true, env = "BINDWAVE_CONTROLLER", default_value = "https://127.0.0.1:8080")]
    pub controller: String,
    /// The API token [default: read from --token-file].
    #[arg(long, global = true, env = "BINDWAVE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the API token [default: <data dir>/admin.token, if it exists, where the data dir is
    /// $BINDWAVE_DATA_DIR or ./bindwave-data, as for `bindwave serve`].
    #[arg(long, global = true, env = "BINDWAVE_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The CA the controller's certificate must chain to, PEM [default: <data dir>/tls/ca.pem, if it exists;
    /// else the system's roots].
    #[arg(long, global = true, env = "BINDWAVE_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Who you are, for the audit log of a controller in lab mode (default: $USER@hostname); with tokens,
    /// the audit log names the token.
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

/// `bindwave webhook ...`.
#[derive(Subcommand)]
pub enum WebhookCmd {
    /// The newest deliveries, newest first: event, rollout, receiver, state (pending, delivered, failed),
    /// attempts and the last answer.
    #[command(
        after_help = "Examples:\n  bindwave webhook deliveries\n  bindwave webhook deliveries --limit 1000 -o json"
    )]
    Deliveries {
        /// How many (the controller keeps the last 10,000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the controller: embedded MQTT broker (or an external one), store, HTTP API, metrics.
    #[command(after_help = "Examples:\n  bindwave serve --data-dir /var/lib/bindwave\n  \
        bindwave serve --config /etc/bindwave/bindwave.toml --log-format json\n  \
        bindwave serve --broker mqtts://mosquitto.example:8883 --broker-ca ca.pem --broker-client-cert \
        controller.pem --broker-client-key controller.key --http-listen 0.0.0.0:8080 \
        --public-url https://bindwave.example:8080\n  bindwave serve --insecure-lab   # a lab: plain MQTT and HTTP, no tokens\n\n\
        Every setting comes from its flag, else its environment variable (BINDWAVE_DATA_DIR, BINDWAVE_HTTP_LISTEN, \
        BINDWAVE_PUBLIC_URL, BINDWAVE_MQTT_LISTEN, BINDWAVE_BROKER, BINDWAVE_LOG_LEVEL, BINDWAVE_LOG_FORMAT, \
        BINDWAVE_TLS_CERT, BINDWAVE_INSECURE_LAB, BINDWAVE_BROKER_PASSWORD, BINDWAVE_MAX_UPLOAD_SIZE, ...), else \
        the --config file (the same names in lowercase, without BINDWAVE_), else its default.\n\n\
        On its first start it writes an admin API token to <data-dir>/admin.token (mode 0600).")]
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
    /// Print the HTTP API's OpenAPI description (what `bindwave serve` serves at /api/v1/openapi.json), for
    /// client generators and API tools, without a running controller.
    #[command(after_help = "Examples:\n  bindwave openapi > bindwave-openapi.json")]
    Openapi,
    /// Build, inspect and upload bind files.
    #[command(
        subcommand,
        after_help = "Examples:\n  bindwave image keygen --out release.key\n  \
        bindwave image pack fw.img --version 'V3 R3.18.0' --hardware-levels 3,4 --sign-key release.key -o fw.bind\n  \
        bindwave image add fw.bind\n  bindwave image list"
    )]
    Image(ImageCmd),
    /// Make certificates: `certs dev`, a development CA with server, controller and device certificates.
    #[command(
        subcommand,
        after_help = "Examples:\n  bindwave certs dev --out lab-tls --devices 3\n  \
        bindwave certs dev --out lab-tls --device phone-a --device phone-b --host bindwave.example"
    )]
    Certs(CertsCmd),
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
    /// Make, list and revoke the operators' API tokens (admin role).
    #[command(
        subcommand,
        after_help = "Examples:\n  bindwave token create --name alice --role operator\n  bindwave token list\n  \
        bindwave token revoke alice\n\n\
        Roles: viewer (reads), operator (rollouts, their actions, stops, image uploads), admin (tokens, everything)."
    )]
    Token(TokenCmd),
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
    /// Webhook notifications of rollout events: what was sent, to whom, and how it went.
    #[command(
        subcommand,
        after_help = "Examples:\n  bindwave webhook deliveries\n  bindwave webhook deliveries --limit 1000 -o json"
    )]
    Webhook(WebhookCmd),
    /// Download a consistent copy of the live controller (records, keys, certificates, images) into one file.
    #[command(after_help = "Examples:\n  bindwave backup --out bindwave-2026-12-03.tar\n  \
        bindwave backup --out records.tar --without-images   # binds kept elsewhere\n\n\
        The controller keeps working while it is taken: the store is copied between two batches. The file holds \
        the controller's command key, broker secret and CA keys: keep it as safe as the data directory. Needs an \
        admin token.")]
    Backup {
        /// The file to write (a tar archive; written whole or not at all).
        #[arg(long)]
        out: PathBuf,
        /// Leave the images' binds out.
        #[arg(long)]
        without_images: bool,
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Make a new data directory from a backup; then `bindwave serve` on it carries on where the backup was.
    #[command(after_help = "Examples:\n  bindwave restore bindwave-2026-12-03.tar --data-dir /var/lib/bindwave\n\n\
        The data directory must be new or empty. Phones reconnect to the restored controller with the credentials \
        and keys they had, and rollouts go on from the backup's moment: jobs sent since are sent again, and the \
        phones answer them from their journals.")]
    Restore {
        /// The backup file (`bindwave backup --out`).
        file: PathBuf,
        /// The data directory to write (new, or empty).
        #[arg(long, env = "BINDWAVE_DATA_DIR", default_value = "bindwave-data")]
        data_dir: PathBuf,
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Run a simulated fleet (real agents, one MQTT connection each) against a broker until stopped.
    #[cfg(feature = "sim")]
    #[command(after_help = simulate::AFTER_HELP)]
    Simulate(simulate::SimulateArgs),
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
            Command::Simulate(_) | Command::Demo(_) => true,
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
    /// The embedded MQTT broker's address, ignored with --broker [default: 127.0.0.1:8883, or 127.0.0.1:1883 in
    /// lab mode].
    #[arg(long)]
    pub mqtt_listen: Option<SocketAddr>,
    /// Use this external broker (mqtts://host:port; mqtt:// only in lab mode) instead of the embedded one.
    #[arg(long)]
    pub broker: Option<String>,
    /// The URL agents download binds from [default: https://<http-listen>].
    #[arg(long)]
    pub public_url: Option<String>,
    /// A release key images must be signed with: a public key file or `ed25519:<hex>`; may be repeated.
    #[arg(long = "release-key", value_name = "KEY")]
    pub release_keys: Vec<String>,
    /// A lab setting: add and roll out unsigned images too.
    #[arg(long)]
    pub allow_unsigned_images: bool,
    /// How long a signed command without a time limit of its own stays valid, e.g. 24h [default: 24h].
    #[arg(long, value_parser = bindwave_settings::duration::parse_secs)]
    pub command_ttl: Option<u64>,
    /// The server certificate of the embedded broker and of HTTPS (PEM) [default: a development one in
    /// <data-dir>/tls/].
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Require MQTT client certificates signed by this CA (PEM); their CN is the client's identity.
    #[arg(long)]
    pub mqtt_client_ca: Option<PathBuf>,
    /// Lab mode: plain MQTT, anonymous clients, no topic rules; plain HTTP without tokens. Never for a real fleet.
    #[arg(long)]
    pub insecure_lab: bool,
    /// The CA the controller verifies its broker with (PEM) [default: <data-dir>/tls/ca.pem].
    #[arg(long)]
    pub broker_ca: Option<PathBuf>,
    /// The controller's MQTT client certificate (PEM, CN bindwave:controller).
    #[arg(long)]
    pub broker_client_cert: Option<PathBuf>,
    /// The private key of --broker-client-cert (PEM).
    #[arg(long)]
    pub broker_client_key: Option<PathBuf>,
    /// The controller's username on an external broker (its password: BINDWAVE_BROKER_PASSWORD).
    #[arg(long)]
    pub broker_username: Option<String>,
    /// Open HTTP connections at most; the open-files limit may cap it lower [default: 1024].
    #[arg(long, value_name = "N")]
    pub http_max_connections: Option<usize>,
    /// The largest image upload, in bytes [default: 2147483648, 2 GiB].
    #[arg(long, value_name = "BYTES")]
    pub max_upload_size: Option<u64>,
    /// Seconds for a TLS handshake, and for each request's headers [default: 10].
    #[arg(long, value_name = "SECS")]
    pub http_header_timeout_secs: Option<u64>,
    /// Seconds a request body may send nothing [default: 30].
    #[arg(long, value_name = "SECS")]
    pub http_body_timeout_secs: Option<u64>,
    /// The Prometheus that analysis gates query, e.g. http://prometheus:9090.
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// Post rollout events to this URL, as signed JSON (repeat for several).
    #[arg(long = "webhook-url", value_name = "URL")]
    pub webhook_urls: Vec<String>,
    /// The secret webhooks are signed with [default: <data-dir>/webhook.secret, made at first start].
    #[arg(long, value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
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
            release_keys: (!self.release_keys.is_empty()).then(|| self.release_keys.clone()),
            allow_unsigned_images: self.allow_unsigned_images.then_some(true),
            command_ttl: self.command_ttl,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            mqtt_client_ca: self.mqtt_client_ca.clone(),
            insecure_lab: self.insecure_lab.then_some(true),
            broker_ca: self.broker_ca.clone(),
            broker_client_cert: self.broker_client_cert.clone(),
            broker_client_key: self.broker_client_key.clone(),
            broker_username: self.broker_username.clone(),
            broker_password: None,
            http_max_connections: self.http_max_connections,
            max_upload_size: self.max_upload_size,
            http_header_timeout_secs: self.http_header_timeout_secs,
            http_body_timeout_secs: self.http_body_timeout_secs,
            prometheus_url: self.prometheus_url.clone(),
            webhook_urls: (!self.webhook_urls.is_empty()).then(|| self.webhook_urls.clone()),
            webhook_secret_file: self.webhook_secret_file.clone(),
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
        after_help = "Examples:\n  bindwave image pack fw.img --version 'V3 R3.18.0' --hardware-levels 3,4 --sign-key release.key -o fw.bind\n  \
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
        /// Sign the bind with this release key (a private key file from `bindwave image keygen`).
        #[arg(long, value_name = "KEY")]
        sign_key: Option<PathBuf>,
    },
    /// Make a release key pair: the private key (mode 0600) and KEY.pub beside it, which phones pin.
    #[command(after_help = "Examples:\n  bindwave image keygen --out release.key")]
    Keygen {
        /// Where to write the private key; it is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a bind with a release key (in place, or into --out); a previous signature is replaced.
    #[command(after_help = "Examples:\n  bindwave image sign fw.bind --key release.key\n  \
        bindwave image sign fw.bind --key release.key --out fw-signed.bind")]
    Sign {
        file: PathBuf,
        /// The private key file (`bindwave image keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Write the signed bind here instead of replacing FILE.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print a bind's header, check its payload digest, and show who signed it.
    #[command(after_help = "Examples:\n  bindwave image inspect fw.bind -o json\n  \
        bindwave image inspect fw.bind --trust release.key.pub\n\n\
        With --trust, the exit status is 1 unless the signature verifies under one of the keys given.")]
    Inspect {
        file: PathBuf,
        /// A public key to check the signature against: a key file or `ed25519:<hex>`; may be repeated.
        #[arg(long, value_name = "KEY")]
        trust: Vec<String>,
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
pub enum TokenCmd {
    /// Make a token; it is printed this once (the controller keeps only its hash).
    #[command(after_help = "Examples:\n  bindwave token create --name alice --role operator\n  \
        bindwave token create --name grafana --role viewer > /etc/prometheus/bindwave.token")]
    Create {
        /// Its name, which the audit log shows for what it does.
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: crate::tokens::Role,
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// The tokens: names, roles, creation times (never the tokens).
    #[command(after_help = "Examples:\n  bindwave token list\n  bindwave token list -o json")]
    List {
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Revoke a token by its name: it stops working at once.
    #[command(after_help = "Examples:\n  bindwave token revoke alice")]
    Revoke { name: String },
}

#[derive(Subcommand)]
pub enum DeviceCmd {
    /// List devices with their hardware level and running software.
    #[command(
        after_help = "Examples:\n  bindwave device list -o json\n  bindwave device list --filter \"CP400 offline\""
    )]
    List {
        /// Only devices matching every word: a part of the id, model, part number, hardware level, software
        /// version, a label, or online/offline.
        #[arg(long, default_value = "")]
        filter: String,
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// One device: its last hello, what its hellos changed, and its job in every rollout with outcome and reason.
    #[command(
        after_help = "Examples:\n  bindwave device show phone-00001\n  bindwave device show phone-00001 -o json"
    )]
    Show {
        /// The device id.
        id: String,
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Print a device's MQTT password (its username is its id), derived from the data directory's
    /// broker.secret.
    #[command(after_help = "Examples:\n  bindwave device credentials phone-00001 --data-dir /var/lib/bindwave\n  \
        bindwave device credentials phone-00001 -o json")]
    Credentials {
        /// The device id.
        id: String,
        /// The controller's data directory, which holds broker.secret.
        #[arg(long, env = "BINDWAVE_DATA_DIR", default_value = "bindwave-data")]
        data_dir: PathBuf,
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Subcommand)]
pub enum CertsCmd {
    /// A development CA (ca.pem, ca.key), a server certificate (server.pem, server.key), a controller client
    /// certificate (controller.pem, CN bindwave:controller), and a client certificate per device
    /// (<id>.pem, CN the device id). Private keys are written with mode 0600; no file is replaced.
    #[command(after_help = "Examples:\n  bindwave certs dev --out lab-tls --devices 3\n  \
        bindwave certs dev --out lab-tls --device phone-a --host bindwave.example --host 10.0.0.5")]
    Dev {
        /// The directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// A device to make a client certificate for (repeatable).
        #[arg(long = "device", value_name = "ID")]
        devices: Vec<String>,
        /// Also make certificates for N numbered devices, phone-00001 to phone-N (the simulated fleet's names).
        #[arg(long = "devices", value_name = "N", default_value_t = 0)]
        count: u32,
        /// Another name or address for the server certificate (repeatable); localhost, 127.0.0.1, ::1 and this
        /// machine's host name are always in it.
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
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
    /// The Prometheus that analysis gates query (`--analysis` on rollouts you create with --keep-running).
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<String>,
}

fn parse_version(s: &str) -> Result<SoftwareVersion, String> {
    s.parse().map_err(|e: bindwave_proto::ProtoError| e.to_string())
}

/// The data directory the CLI looks in for the token and the CA when none is given: `bindwave serve`'s.
fn default_data_dir() -> PathBuf {
    std::env::var_os("BINDWAVE_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| "bindwave-data".into(), PathBuf::from)
}

/// The flags that say how to reach the controller.
pub struct Connect {
    pub controller: String,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

impl Connect {
    pub fn of(cli: &Cli) -> Connect {
        Connect {
            controller: cli.controller.clone(),
            token: cli.token.clone(),
            token_file: cli.token_file.clone(),
            ca_file: cli.ca_file.clone(),
        }
    }

    /// A client of the controller.
    pub fn client(&self) -> Result<ApiClient, ControllerError> {
        ApiClient::connect(&self.remote()?)
    }

    /// How to reach the controller: `--controller`, the token (`--token`, else `--token-file`, else the data
    /// directory's `admin.token` if there is one), the CA (`--ca-file`, else the data directory's
    /// `tls/ca.pem` if there is one).
    pub fn remote(&self) -> Result<crate::client::Remote, ControllerError> {
        let data_dir = default_data_dir();
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.trim().to_string()),
            (None, Some(file)) => Some(read_token(file)?),
            (None, None) => {
                let file = data_dir.join(crate::token_store::ADMIN_TOKEN_FILE);
                if file.exists() {
                    Some(read_token(&file)?)
                } else {
                    None
                }
            }
        };
        let ca_file = self.ca_file.clone().or_else(|| Some(data_dir.join("tls").join("ca.pem")).filter(|p| p.exists()));
        Ok(crate::client::Remote { url: self.controller.clone(), token, ca_file })
    }
}

fn read_token(path: &std::path::Path) -> Result<String, ControllerError> {
    let text = std::fs::read_to_string(path).map_err(crate::error::io_err("read the token file", path))?;
    Ok(text.trim().to_string())
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), ControllerError> {
    let connect = Connect::of(&cli);
    let api = || connect.client();
    match cli.command {
        Command::Serve(args) => serve::run(args.settings(cli.log_level, cli.log_format)?).await,
        Command::Config(ConfigCmd::Check { config, output }) => config_check::run(config.as_deref(), output),
        Command::Completions { shell, agent } => docs::completions(shell, agent),
        Command::Man { dir } => docs::man_pages(&dir),
        Command::Openapi => docs::openapi(),
        #[cfg(feature = "sim")]
        Command::Simulate(args) => simulate::run(args).await,
        #[cfg(feature = "sim")]
        Command::Demo(args) => {
            let opts = crate::demo::DemoOptions {
                devices: args.devices as usize,
                http_listen: args.http_listen,
                keep_running: args.keep_running,
                prometheus_url: args.prometheus_url,
            };
            crate::demo::run(opts, serve::shutdown_signal()).await
        }
        Command::Image(cmd) => image::run(cmd, &api).await,
        Command::Token(cmd) => token::run(cmd, api()?).await,
        Command::Certs(CertsCmd::Dev { out, devices, count, hosts }) => certs::dev(&out, &devices, count, &hosts),
        Command::Device(DeviceCmd::Credentials { id, data_dir, output }) => device::credentials(&id, &data_dir, output),
        Command::Device(DeviceCmd::Show { id, output }) => {
            let detail = api()?.device(&id).await?;
            emit(&detail, output, device::print_detail)
        }
        Command::Device(DeviceCmd::List { filter, output }) => {
            let devices = api()?.devices_matching(&filter).await?;
            emit(&devices, output, |d| output::print_devices(d))
        }
        Command::Rollout(cmd) => rollout::run(cmd, api()?, &actor(cli.actor)).await,
        Command::Stop { reason, abort } => {
            let api = api()?;
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
        Command::Backup { out, without_images, output } => backup::backup(api()?, &out, without_images, output).await,
        Command::Restore { file, data_dir, output } => backup::restore(&file, &data_dir, output).await,
        Command::Webhook(WebhookCmd::Deliveries { limit, output }) => {
            let deliveries = api()?.webhook_deliveries(limit).await?;
            emit(&deliveries, output, |deliveries| {
                let mut t = Table::new(["ID", "TIME (UTC)", "EVENT", "ROLLOUT", "URL", "STATE", "ATTEMPTS", "LAST"]);
                for d in deliveries {
                    let last = match (&d.last_status, &d.last_error) {
                        (_, Some(e)) => e.clone(),
                        (Some(s), None) => format!("HTTP {s}"),
                        (None, None) => String::new(),
                    };
                    let state: &str = match d.state {
                        crate::webhooks::DeliveryState::Pending => "pending",
                        crate::webhooks::DeliveryState::Delivered => "delivered",
                        crate::webhooks::DeliveryState::Failed => "failed",
                    };
                    t.row([
                        d.id.to_string(),
                        rollout::time(d.created_at),
                        d.event.clone(),
                        d.rollout.clone().unwrap_or_default(),
                        d.url.clone(),
                        state.to_string(),
                        d.attempts.to_string(),
                        last,
                    ]);
                }
                print!("{t}");
            })
        }
        Command::Audit { rollout, output } => {
            let entries = api()?.audit(rollout.as_deref()).await?;
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
