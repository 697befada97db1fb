//! `bindwave simulate`: a fleet of real agents in a process of its own, with the state durability and fault mix
//! a benchmark or a test asks for, and what each phone costs in memory.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::serve;
use crate::fleet::faults::{self, Share};
use crate::fleet::{memory, Fleet, FleetLogin, FleetOptions};
use crate::{images, ControllerError};

pub const AFTER_HELP: &str = "\
Fault mix: each of --fail-install, --offline, --slow-download and --crash-mid-update takes a share of the fleet, \
a percentage (2%) or a number of phones (3), rounded to whole phones. The phones are drawn from --seed and their \
index, each has at most one fault, and the same seed draws the same phones. They are printed at start and kept \
in <state-dir>/faults.json.
  --fail-install      the phone's installer fails: every bind it would install is reported failed \
(install_failed, naming the installer's error); rejections still happen first.
  --offline           the phone drops off the network --offline-after it starts, with no goodbye (the broker \
publishes its last will), and comes back after --offline-for (default: never). A command sent meanwhile waits \
at the broker, or times out at the controller (--device-timeout of the rollout).
  --slow-download     the phone's HTTP(S) downloads pass through a local proxy at --slow-rate bytes a second.
  --crash-mid-update  the phone loses power once mid-update: half of them when their download has shown \
progress (they download through the same throttle, so the cut falls mid-download), half when they start \
installing. It starts again on the same state 0.5 s later and must end with one true outcome.

Memory: every 10 s, while it changes, a line says what the phones add to the process's resident set, each: \
\"memory: 28.1 KiB a phone now, 40.2 KiB at the peak (...)\".

Examples:
  bindwave simulate --devices 5000 --broker mqtts://127.0.0.1:8883 --controller-data-dir bindwave-data \
--state-dir /tmp/fleet
  bindwave simulate --devices 5000 --broker mqtt://127.0.0.1:1883 --state-dir /tmp/fleet   # a lab-mode controller
  bindwave simulate --devices 10000 --state nosync --fail-install 2% --offline 1% --slow-download 5% \
--crash-mid-update 1% --seed 7";

/// How the phones keep their state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateMode {
    /// As a phone does: every journal, slot record, payload and download is synced before it is acted on.
    Disk,
    /// Written as on disk, never synced (no fsync): thousands of phones on one disk measure the controller,
    /// not the disk's sync queue. Put --state-dir on tmpfs to keep the files in memory too.
    Nosync,
}

#[derive(Args)]
pub struct SimulateArgs {
    #[arg(long, default_value_t = 100)]
    pub devices: usize,
    /// The broker the controller uses. Repeat it, or separate with commas, for the nodes of a broker
    /// cluster: the phones are spread over them in turn, each with the others as fallbacks.
    #[arg(long, env = "BINDWAVE_BROKER", value_delimiter = ',', default_value = "mqtt://127.0.0.1:1883")]
    pub broker: Vec<String>,
    /// Where the phones keep their slots and journals.
    #[arg(long, default_value = "bindwave-fleet")]
    pub state_dir: PathBuf,
    /// How the phones keep their state.
    #[arg(long, value_enum, default_value_t = StateMode::Disk)]
    pub state: StateMode,
    /// A release key the phones pin (a public key file or `ed25519:<hex>`); may be repeated. Without
    /// one, the simulated phones run in lab mode.
    #[arg(long = "release-key", value_name = "KEY")]
    pub release_keys: Vec<String>,
    /// The controller's command key that the phones pin (its data_dir/controller.key.pub). Without it they
    /// run in lab mode: commands they cannot verify are taken, without their override.
    #[arg(long, value_name = "FILE")]
    pub controller_key: Option<PathBuf>,
    /// Log in to a secure embedded broker (mqtts://): the controller's data directory, whose tls/ca.pem
    /// verifies the broker and whose broker.secret gives each phone its password.
    #[arg(long, value_name = "DIR")]
    pub controller_data_dir: Option<PathBuf>,
    /// Phones whose installer fails (see below).
    #[arg(long, value_name = "SHARE", default_value_t = Share::NONE)]
    pub fail_install: Share,
    /// Phones that drop off the network.
    #[arg(long, value_name = "SHARE", default_value_t = Share::NONE)]
    pub offline: Share,
    /// When an offline phone drops off, after it starts, e.g. 30s.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = bindwave_settings::duration::parse_secs)]
    pub offline_after: u64,
    /// How long it stays away before it comes back, e.g. 2m [default: for good].
    #[arg(long, value_name = "DURATION", value_parser = bindwave_settings::duration::parse_secs)]
    pub offline_for: Option<u64>,
    /// Phones whose downloads are throttled.
    #[arg(long, value_name = "SHARE", default_value_t = Share::NONE)]
    pub slow_download: Share,
    /// The throttled download rate, in bytes a second.
    #[arg(long, value_name = "BYTES", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub slow_rate: u64,
    /// Phones that lose power once mid-update.
    #[arg(long, value_name = "SHARE", default_value_t = Share::NONE)]
    pub crash_mid_update: Share,
    /// Draws which phones get which fault.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Runs the fleet until Ctrl-C or SIGTERM.
pub async fn run(args: SimulateArgs) -> Result<(), ControllerError> {
    crate::raise_open_files_limit();
    let keys: Result<Vec<_>, _> = args.release_keys.iter().map(|k| images::public_key_arg(k)).collect();
    let controller = args.controller_key.as_deref().map(crate::keys::load_public).transpose()?;
    let trust = bindwave_agent::config::TrustSettings {
        keys: keys?.iter().map(|k| k.to_line()).collect(),
        controller_keys: controller.iter().map(|k| k.to_line()).collect(),
        insecure_lab: args.release_keys.is_empty() || controller.is_none(),
        ..Default::default()
    };
    let login = match &args.controller_data_dir {
        Some(dir) => {
            Some(FleetLogin { ca_file: dir.join("tls").join(crate::certs::CA_CERT), secret: serve::load_secret(dir)? })
        }
        None => None,
    };
    let options = FleetOptions {
        durability: match args.state {
            StateMode::Disk => bindwave_agent::Durability::Full,
            StateMode::Nosync => bindwave_agent::Durability::NoSync,
        },
        mix: faults::Mix {
            fail_install: args.fail_install,
            offline: args.offline,
            slow_download: args.slow_download,
            crash_mid_update: args.crash_mid_update,
        },
        seed: args.seed,
        slow_rate: args.slow_rate,
        offline_after: Duration::from_secs(args.offline_after),
        offline_for: args.offline_for.map(Duration::from_secs),
    };
    memory::release_freed();
    let before = memory::Resident::of_this_process();
    let (devices, state_dir) = (args.devices, &args.state_dir);
    let fleet = Fleet::spawn(devices, &args.broker, state_dir, &trust, login.as_ref(), &options).await?;
    write_faults(&fleet, &options)?;
    eprintln!(
        "{devices} simulated phones on {}, state in {} ({}); Ctrl-C stops them",
        args.broker.join(", "),
        state_dir.display(),
        match args.state {
            StateMode::Disk => "synced",
            StateMode::Nosync => "not synced",
        }
    );
    let reporter = before.map(|b| memory::report(b, devices, Duration::from_secs(10)));
    serve::shutdown_signal().await;
    if let Some(r) = reporter {
        r.abort();
    }
    fleet.stop().await;
    Ok(())
}

/// Prints the fault mix, and keeps it in `<state-dir>/faults.json` (device ids by fault) for whoever checks the
/// outcomes.
fn write_faults(fleet: &Fleet, options: &FleetOptions) -> Result<(), ControllerError> {
    let a = faults::by_fault(&fleet.faults);
    let ids = |v: &[usize]| v.iter().map(|&i| crate::fleet::device_id(i)).collect::<Vec<_>>();
    let json = serde_json::json!({
        "seed": options.seed,
        "fail_install": ids(&a.fail_install),
        "offline": ids(&a.offline),
        "slow_download": ids(&a.slow_download),
        "crash_mid_update": ids(&a.crash_mid_update),
    });
    let total = a.fail_install.len() + a.offline.len() + a.slow_download.len() + a.crash_mid_update.len();
    if total > 0 {
        eprintln!(
            "faults (seed {}): {} failing installs, {} offline, {} slow downloads, {} crashing mid-update; \
             listed in faults.json",
            options.seed,
            a.fail_install.len(),
            a.offline.len(),
            a.slow_download.len(),
            a.crash_mid_update.len()
        );
    }
    let path = fleet.state_root.join("faults.json");
    std::fs::create_dir_all(&fleet.state_root).map_err(crate::error::io_err("create", &fleet.state_root))?;
    std::fs::write(&path, format!("{json:#}\n")).map_err(crate::error::io_err("write", &path))
}
