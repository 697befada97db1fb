//! `bindwave rollout ...`: plan, create, steer and watch rollouts.

use std::io::IsTerminal;
use std::time::Duration;

use bindwave_proto::wire::DeviceId;
use bindwave_proto::{HardwareLevel, SoftwareVersion};
use clap::{Args, Subcommand};

use super::output::{emit, Format};
use crate::api::{ActionRequest, RolloutRequest, RolloutStatus};
use crate::client::ApiClient;
use crate::engine::plan::Plan;
use crate::engine::Action;
use crate::model::{
    GateAction, GateOverrides, Gates, JobPhase, Outcome, RolloutSpec, RolloutState, Schedule, Stage, TargetFilter,
    WaveSize, WaveSpec,
};
use crate::schedule::{Ramp, Rate, Window};
use crate::table::Table;
use crate::ControllerError;

#[derive(Subcommand)]
pub enum RolloutCmd {
    /// Show the waves a rollout would have, and how many devices the inventory predicts will reject, and why.
    #[command(after_help = "Examples:\n  bindwave rollout plan --image 3fa2c1 --all --waves 1%,10%,50%,100%")]
    Plan {
        #[command(flatten)]
        args: RolloutArgs,
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Create a rollout (it waits for `rollout start`, or use --start).
    #[command(
        after_help = "Examples:\n  bindwave rollout create --image 3fa2c1 --all --waves 1%,10%,50%,100% --soak 30m --start\n  \
        bindwave rollout create --image 3fa2c1 --hardware-level 3 --label site=munich --waves 5,50,all \\\n      \
        --failure-threshold 5% --on-failure abort --device-timeout 20m --max-concurrent 100\n  \
        bindwave rollout create --image 3fa2c1 --devices phone-0001,phone-0002 --override \\\n      --reason \"lab phones, CHG-4711\" --start"
    )]
    Create {
        #[command(flatten)]
        args: RolloutArgs,
        /// Start it at once.
        #[arg(long)]
        start: bool,
    },
    /// Send the first wave's commands.
    #[command(
        after_help = "Examples:\n  bindwave rollout start r1\n  bindwave rollout start r1 --reason \"change CHG-4711\""
    )]
    Start(ActionArgs),
    /// Stop sending commands; devices already commanded finish.
    #[command(after_help = "Examples:\n  bindwave rollout pause r1 --reason \"helpdesk reports one-way audio\"")]
    Pause(ActionArgs),
    /// Continue a paused rollout. After a gate stopped it, resuming accepts what happened and goes on.
    #[command(
        after_help = "Examples:\n  bindwave rollout resume r1 --reason \"failures were a dead switch in site B\""
    )]
    Resume(ActionArgs),
    /// Stop for good: devices not yet commanded are cancelled; commanded ones finish and are recorded (or, with
    /// --cancel-in-flight, are told to stop too: `rollout cancel`).
    #[command(after_help = "Examples:\n  bindwave rollout abort r1 --reason \"bad image, replaced by r2\"\n  \
        bindwave rollout abort r1 --cancel-in-flight --reason \"wrong image\"")]
    Abort {
        #[command(flatten)]
        args: ActionArgs,
        /// Also tell commanded phones that have not begun to install to stop: they drop the download, report
        /// `cancelled` and stay on their version. A phone already installing reports its true outcome.
        #[arg(long)]
        cancel_in_flight: bool,
    },
    /// Abort, and tell commanded phones that have not begun to install to stop: they drop the download and
    /// its retries, report `cancelled` and stay on their version. A phone already installing reports its true
    /// outcome.
    #[command(after_help = "Examples:\n  bindwave rollout cancel r1 --reason \"wrong image for site B\"")]
    Cancel(ActionArgs),
    /// Command failed and timed-out devices again (rejections are never retried).
    #[command(after_help = "Examples:\n  bindwave rollout retry r1 --reason \"file server was down\"")]
    Retry(ActionArgs),
    /// Let a wave that waits for approval start.
    #[command(after_help = "Examples:\n  bindwave rollout approve r1 --reason \"canary looks good\"")]
    Approve(ActionArgs),
    /// A rollout's state, waves, counts, and every device's outcome and reason.
    #[command(after_help = "Examples:\n  bindwave rollout status r1\n  bindwave rollout status r1 --wait -o json")]
    Status {
        id: String,
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
        /// Wait until the rollout has finished or stopped.
        #[arg(long)]
        wait: bool,
    },
    /// Follow a rollout live: a bar per wave, the gate status, counts by state and reason. Ctrl-C leaves.
    #[command(after_help = "Examples:\n  bindwave rollout watch r1")]
    Watch { id: String },
    /// All rollouts with their counts.
    #[command(after_help = "Examples:\n  bindwave rollout list\n  bindwave rollout list -o yaml")]
    List {
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Args)]
pub struct ActionArgs {
    pub id: String,
    /// Why, for the audit log.
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// What to roll out, to whom, in which waves, under which gates.
#[derive(Args, Clone)]
#[command(group = clap::ArgGroup::new("targets").required(true).multiple(true)
    .args(["devices", "all", "part_number", "model", "hardware_level", "software_version", "label"]))]
pub struct RolloutArgs {
    /// The image's SHA-256 or a unique prefix (at least 6 characters).
    #[arg(long)]
    pub image: String,
    /// Target these devices (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<DeviceId>,
    /// Target every device the controller knows.
    #[arg(long)]
    pub all: bool,
    /// Target devices with this part number (repeat for several).
    #[arg(long)]
    pub part_number: Vec<String>,
    /// Target devices of this model.
    #[arg(long)]
    pub model: Vec<String>,
    /// Target devices at this hardware level.
    #[arg(long)]
    pub hardware_level: Vec<u16>,
    /// Target devices running this software version.
    #[arg(long, value_parser = parse_version)]
    pub software_version: Vec<SoftwareVersion>,
    /// Target devices carrying this label (all given labels must match).
    #[arg(long)]
    pub label: Vec<String>,
    /// Also take in matching devices that say hello later (into the last wave).
    #[arg(long)]
    pub follow: bool,
    /// Cumulative wave sizes: counts, percentages or "all" (e.g. 1%,10%,50%,100%). Wave 1 also holds one
    /// device of every (hardware level, software version) cohort.
    #[arg(long, value_delimiter = ',', default_value = "100%")]
    pub waves: Vec<WaveSize>,
    /// Share of a wave that must succeed (rejections aside) before the next starts.
    #[arg(long, value_parser = parse_ratio, default_value = "95%")]
    pub success_ratio: f64,
    /// Failures over finished devices above which the rollout pauses (or aborts).
    #[arg(long, value_parser = parse_ratio, default_value = "10%")]
    pub failure_threshold: f64,
    /// Finished devices needed before the failure threshold applies.
    #[arg(long, default_value_t = 3)]
    pub failure_min: usize,
    #[arg(long, value_parser = parse_action, default_value = "pause")]
    pub on_failure: GateAction,
    /// Rejections (hardware or software level) above which the rollout pauses (or aborts). Default: reported,
    /// never stopping.
    #[arg(long, value_parser = parse_ratio)]
    pub rejection_threshold: Option<f64>,
    #[arg(long, default_value_t = 10)]
    pub rejection_min: usize,
    #[arg(long, value_parser = parse_action, default_value = "pause")]
    pub on_rejection: GateAction,
    /// Wait after a wave passes before the next starts (e.g. 30m).
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub soak: u64,
    /// A device without a final report this long after its command has timed out (a failure).
    #[arg(long, value_parser = parse_duration, default_value = "30m")]
    pub device_timeout: u64,
    /// The most devices updating at once.
    #[arg(long)]
    pub max_concurrent: Option<usize>,
    /// Every wave waits for `rollout approve` before it starts.
    #[arg(long)]
    pub approval: bool,
    /// An analysis gate: a PromQL query and the condition it must meet after each wave, e.g.
    /// 'sum(rate(pbx_call_failures_total{site="munich"}[5m])) < 0.01' (repeat for several). Measured every
    /// --analysis-every from the wave's pass through its soak (at least once); a failed measurement pauses the
    /// rollout, one without data too. Needs `prometheus_url` in the controller's config.
    #[arg(long = "analysis", value_name = "QUERY OP NUMBER")]
    pub analyses: Vec<String>,
    /// How often --analysis queries are measured.
    #[arg(long, value_parser = parse_duration, default_value = "1m")]
    pub analysis_every: u64,
    /// Analyses defined in a TOML file, as [[analysis]] tables (name, query, success, interval_secs, count,
    /// failure_limit, on_failure), added to the --analysis ones.
    #[arg(long, value_name = "FILE")]
    pub analysis_file: Option<std::path::PathBuf>,
    /// Per-wave gate overrides, e.g. "1:soak=1h,success=100%" or "3:approval=true,max-concurrent=50".
    #[arg(long = "wave-gates", value_parser = parse_wave_gates)]
    pub wave_gates: Vec<(usize, GateOverrides)>,
    /// Command phones only inside this maintenance window, in each phone's time zone (repeat for several),
    /// e.g. "Mon-Fri 19:00-06:00" and "Sat,Sun 00:00-24:00". Phones also install only inside it.
    #[arg(long = "window", value_name = "DAYS HH:MM-HH:MM")]
    pub windows: Vec<Window>,
    /// Phones download and verify when commanded, and install only inside this window (repeat for several):
    /// download by day, install by night.
    #[arg(long = "install-window", value_name = "DAYS HH:MM-HH:MM")]
    pub install_windows: Vec<Window>,
    /// The windows' time zone for phones whose hello names none (an IANA name, e.g. Europe/Berlin). Default: UTC.
    #[arg(long)]
    pub timezone: Option<String>,
    /// Commands go out no faster than this in each wave, e.g. 100/min, 5/s, 1000/h.
    #[arg(long)]
    pub rate: Option<Rate>,
    /// A rate that grows in each wave, capped by --rate: exponential:start=10/min,factor=2,every=50.
    #[arg(long)]
    pub ramp: Option<Ramp>,
    /// A wave's own command window, replacing the rollout's for it (repeat), e.g. "2:Sat,Sun 00:00-24:00".
    #[arg(long = "wave-window", value_parser = parse_indexed::<Window>, value_name = "WAVE:WINDOW")]
    pub wave_windows: Vec<(usize, Window)>,
    /// A wave's own install window, replacing the rollout's for it (repeat), e.g. "1:daily 00:00-24:00".
    #[arg(long = "wave-install-window", value_parser = parse_indexed::<Window>, value_name = "WAVE:WINDOW")]
    pub wave_install_windows: Vec<(usize, Window)>,
    /// A wave's own rate, e.g. "1:10/min".
    #[arg(long = "wave-rate", value_parser = parse_indexed::<Rate>, value_name = "WAVE:RATE")]
    pub wave_rates: Vec<(usize, Rate)>,
    /// Install even where the phones' compatibility rule says no.
    #[arg(long = "override", requires = "reason")]
    pub override_compat: bool,
    /// Why the override (required with --override), for the audit log.
    #[arg(long)]
    pub reason: Option<String>,
    /// Commands carry only the file name (`{sha256}.bind`): phones fetch it from their default access
    /// settings (your own FTP/HTTPS server, where you have put the bind).
    #[arg(long)]
    pub use_defaults: bool,
    /// Seed for drawing wave members (default: random; the rollout records it).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `--analysis-file`: `[[analysis]]` tables.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalysisFile {
    analysis: Vec<crate::model::Analysis>,
}

impl RolloutArgs {
    /// The analyses of `--analysis` (each measured every `--analysis-every` through the soak, at least once)
    /// and of `--analysis-file`.
    fn analyses(&self) -> Result<Vec<crate::model::Analysis>, ControllerError> {
        let every = self.analysis_every.max(1);
        let count = u32::try_from((self.soak / every).max(1)).unwrap_or(u32::MAX).min(10_000);
        let mut all = Vec::new();
        for (i, text) in self.analyses.iter().enumerate() {
            let a = crate::model::Analysis::parse_inline(&format!("analysis-{}", i + 1), text)
                .map_err(ControllerError::BadRequest)?;
            all.push(crate::model::Analysis { interval_secs: every, count, ..a });
        }
        if let Some(path) = &self.analysis_file {
            let text = std::fs::read_to_string(path).map_err(crate::error::io_err("read", path))?;
            let file: AnalysisFile =
                toml::from_str(&text).map_err(|e| ControllerError::BadRequest(format!("{}: {e}", path.display())))?;
            all.extend(file.analysis);
        }
        Ok(all)
    }

    pub fn spec(&self) -> Result<RolloutSpec, ControllerError> {
        let mut waves: Vec<WaveSpec> = self
            .waves
            .iter()
            .map(|s| WaveSpec { size: *s, gates: Default::default(), schedule: Default::default() })
            .collect();
        fn wave<'a>(waves: &'a mut [WaveSpec], flag: &str, n: usize) -> Result<&'a mut WaveSpec, ControllerError> {
            let count = waves.len();
            waves.get_mut(n - 1).ok_or_else(|| {
                ControllerError::BadRequest(format!("{flag} names wave {n}, but --waves has {count} waves"))
            })
        }
        for (n, o) in &self.wave_gates {
            wave(&mut waves, "--wave-gates", *n)?.gates = o.clone();
        }
        for (n, w) in &self.wave_windows {
            wave(&mut waves, "--wave-window", *n)?.schedule.windows.get_or_insert_with(Vec::new).push(*w);
        }
        for (n, w) in &self.wave_install_windows {
            let install = &mut wave(&mut waves, "--wave-install-window", *n)?.schedule.install_windows;
            install.get_or_insert_with(Vec::new).push(*w);
        }
        for (n, r) in &self.wave_rates {
            wave(&mut waves, "--wave-rate", *n)?.schedule.rate = Some(*r);
        }
        Ok(RolloutSpec {
            image: self.image.clone(),
            targets: TargetFilter {
                devices: self.devices.clone(),
                part_numbers: self.part_number.clone(),
                models: self.model.clone(),
                hardware_levels: self.hardware_level.iter().copied().map(HardwareLevel).collect(),
                software_versions: self.software_version.clone(),
                labels: self.label.clone(),
                follow: self.follow,
            },
            waves,
            gates: Gates {
                success_ratio: self.success_ratio,
                failure_ratio: self.failure_threshold,
                failure_min_finished: self.failure_min,
                on_failure: self.on_failure,
                rejection_ratio: self.rejection_threshold,
                rejection_min_finished: self.rejection_min,
                on_rejection: self.on_rejection,
                soak_secs: self.soak,
                device_timeout_secs: self.device_timeout,
                max_concurrent: self.max_concurrent,
                approval: self.approval,
                analyses: self.analyses()?,
            },
            schedule: Schedule {
                windows: self.windows.clone(),
                install_windows: self.install_windows.clone(),
                rate: self.rate,
                ramp: self.ramp,
            },
            timezone: self.timezone.clone(),
            override_compat: self.override_compat,
            override_reason: self.override_compat.then(|| self.reason.clone()).flatten(),
            use_defaults: self.use_defaults,
            seed: self.seed,
        })
    }
}

fn parse_version(s: &str) -> Result<SoftwareVersion, String> {
    s.parse().map_err(|e: bindwave_proto::ProtoError| e.to_string())
}

/// `95%` or `0.95`.
pub fn parse_ratio(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => s.parse::<f64>(),
    }
    .map_err(|_| format!("{s:?} is not a ratio: use a percentage (95%) or a fraction (0.95)"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s:?} is outside 0% to 100%"))
    }
}

/// `90s`, `30m`, `2h`, `1d`, or plain seconds; returns seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    bindwave_settings::duration::parse_secs(s).map_err(|e| {
        if e.contains("longer than") {
            e
        } else {
            format!("{:?} is not a duration: use e.g. 90s, 30m, 2h or 1h30m", s.trim())
        }
    })
}

fn parse_action(s: &str) -> Result<GateAction, String> {
    match s {
        "pause" => Ok(GateAction::Pause),
        "abort" => Ok(GateAction::Abort),
        _ => Err(format!("{s:?}: use pause or abort")),
    }
}

/// `2:soak=1h,success=99%,approval=true`
/// `WAVE:VALUE`, e.g. `2:Sat,Sun 00:00-24:00` or `1:10/min`.
fn parse_indexed<T: std::str::FromStr<Err = String>>(s: &str) -> Result<(usize, T), String> {
    let (n, rest) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected WAVE:VALUE, e.g. 2:Sat,Sun 00:00-24:00 or 1:10/min"))?;
    let n: usize =
        n.trim().parse().ok().filter(|n| *n >= 1).ok_or_else(|| format!("{n:?} is not a wave number (1, 2, ...)"))?;
    Ok((n, rest.parse()?))
}

fn parse_wave_gates(s: &str) -> Result<(usize, GateOverrides), String> {
    let (n, rest) = s.split_once(':').ok_or_else(|| format!("{s:?}: expected WAVE:KEY=VALUE,... e.g. 1:soak=1h"))?;
    let n: usize =
        n.trim().parse().ok().filter(|n| *n >= 1).ok_or_else(|| format!("{n:?} is not a wave number (1, 2, ...)"))?;
    let mut o = GateOverrides::default();
    for kv in rest.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("{kv:?}: expected KEY=VALUE"))?;
        let v = v.trim();
        match k.trim() {
            "success" | "success-ratio" => o.success_ratio = Some(parse_ratio(v)?),
            "failure" | "failure-threshold" => o.failure_ratio = Some(parse_ratio(v)?),
            "failure-min" => o.failure_min_finished = Some(v.parse().map_err(|_| format!("{v:?} is not a count"))?),
            "on-failure" => o.on_failure = Some(parse_action(v)?),
            "rejection" | "rejection-threshold" => o.rejection_ratio = Some(parse_ratio(v)?),
            "rejection-min" => o.rejection_min_finished = Some(v.parse().map_err(|_| format!("{v:?} is not a count"))?),
            "on-rejection" => o.on_rejection = Some(parse_action(v)?),
            "soak" => o.soak_secs = Some(parse_duration(v)?),
            "device-timeout" => o.device_timeout_secs = Some(parse_duration(v)?),
            "max-concurrent" => o.max_concurrent = Some(v.parse().map_err(|_| format!("{v:?} is not a count"))?),
            "approval" => o.approval = Some(v.parse().map_err(|_| format!("{v:?}: use true or false"))?),
            other => {
                return Err(format!(
                    "unknown wave gate {other:?} (success, failure, failure-min, on-failure, rejection, \
                     rejection-min, on-rejection, soak, device-timeout, max-concurrent, approval)"
                ))
            }
        }
    }
    Ok((n, o))
}

pub async fn run(cmd: RolloutCmd, api: ApiClient, actor: &str) -> Result<(), ControllerError> {
    let act = |id: String, reason: String| (id, ActionRequest { actor: actor.to_string(), reason });
    let (action, args) = match cmd {
        RolloutCmd::Plan { args, output } => {
            let plan = api.plan(&RolloutRequest { spec: args.spec()?, actor: actor.to_string() }).await?;
            return emit(&plan, output, print_plan);
        }
        RolloutCmd::Create { args, start } => {
            let r = api.create_rollout(&RolloutRequest { spec: args.spec()?, actor: actor.to_string() }).await?;
            if start {
                api.operate(
                    &r.id.to_string(),
                    Action::Start,
                    &ActionRequest { actor: actor.to_string(), reason: "created with --start".into() },
                )
                .await?;
            }
            println!("{}", r.id);
            return Ok(());
        }
        RolloutCmd::Start(a) => (Action::Start, a),
        RolloutCmd::Pause(a) => (Action::Pause, a),
        RolloutCmd::Resume(a) => (Action::Resume, a),
        RolloutCmd::Abort { args, cancel_in_flight: false } => (Action::Abort, args),
        RolloutCmd::Abort { args, cancel_in_flight: true } | RolloutCmd::Cancel(args) => (Action::Cancel, args),
        RolloutCmd::Retry(a) => (Action::Retry, a),
        RolloutCmd::Approve(a) => (Action::Approve, a),
        RolloutCmd::Status { id, output, wait } => {
            if wait {
                // Polled by its counts alone; every job is fetched once, when it has settled.
                let mut status = api.rollout_counts(&id).await?;
                let bar = super::output::progress_bar(status.devices() as u64, &id);
                while !settled(&status) {
                    bar.set_position((status.devices() - status.open()) as u64);
                    bar.set_message(state_line(&status.rollout.state, status.rollout.waves.len()));
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    status = api.rollout_counts(&id).await?;
                }
                bar.finish_and_clear();
            }
            return emit(&api.rollout(&id).await?, output, print_status);
        }
        RolloutCmd::Watch { id } => return watch(&api, &id).await,
        RolloutCmd::List { output } => {
            let list = api.rollouts().await?;
            return emit(&list, output, |l| print_list(l));
        }
    };
    let (id, req) = act(args.id, args.reason);
    let r = api.operate(&id, action, &req).await?;
    println!("{}: {}", r.id, state_line(&r.state, r.waves.len()));
    Ok(())
}

fn print_list(list: &[crate::api::RolloutSummary]) {
    let mut t =
        Table::new(["ROLLOUT", "STATE", "WAVE", "IMAGE", "DEVICES", "SUCCEEDED", "REJ HW", "REJ SW", "FAILED", "OPEN"]);
    for s in list {
        let c = |o| s.counts.get(&o).copied().unwrap_or(0);
        t.row([
            s.rollout.id.to_string(),
            s.rollout.state.name().to_string(),
            s.rollout.state.wave().map_or("-".into(), |w| format!("{}/{}", w + 1, s.rollout.waves.len())),
            s.rollout.image.short().to_string(),
            s.counts.values().sum::<usize>().to_string(),
            c(Outcome::Succeeded).to_string(),
            c(Outcome::RejectedHardware).to_string(),
            c(Outcome::RejectedSoftware).to_string(),
            (c(Outcome::Failed) + c(Outcome::TimedOut)).to_string(),
            crate::model::open_in(&s.counts).to_string(),
        ]);
    }
    print!("{t}");
}

/// Finished, aborted, paused, or waiting for approval: nothing moves without an operator.
pub fn settled(s: &RolloutStatus) -> bool {
    matches!(
        s.rollout.state,
        RolloutState::Finished
            | RolloutState::Aborted { .. }
            | RolloutState::Paused { .. }
            | RolloutState::Active { stage: Stage::AwaitingApproval, .. }
    )
}

pub fn state_line(state: &RolloutState, waves: usize) -> String {
    match state {
        RolloutState::Created => "created; start it with `bindwave rollout start`".into(),
        RolloutState::Active { wave, stage: Stage::AwaitingApproval } => {
            format!("wave {}/{waves} waits for approval (`bindwave rollout approve`)", wave + 1)
        }
        RolloutState::Active { wave, stage: Stage::Updating } => format!("wave {}/{waves} updating", wave + 1),
        RolloutState::Active { wave, stage: Stage::Soaking { until } } => {
            format!("wave {}/{waves} passed; soaking until {}", wave + 1, time(*until))
        }
        RolloutState::Paused { wave, cause, .. } => format!("paused in wave {}/{waves}: {cause}", wave + 1),
        RolloutState::Aborted { cause } => format!("aborted: {cause}"),
        RolloutState::Finished => "finished: every wave passed".into(),
    }
}

/// A timestamp as `2026-11-25 16:47:07` (UTC).
pub fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn print_plan(plan: &Plan) {
    println!(
        "image {} ({})  seed {}  {} cohorts (hardware level x software version), one of each in wave 1",
        plan.image.software_version,
        plan.image.sha256.short(),
        plan.seed,
        plan.cohorts
    );
    let mut cohorts = Table::new(["COHORT", "HW LEVEL", "RUNNING", "DEVICES", "IN WAVE 1"]);
    for (i, c) in plan.canary.iter().enumerate() {
        cohorts.row([
            (i + 1).to_string(),
            c.hardware_level.map_or("-".into(), |l| l.to_string()),
            c.software_version.as_ref().map_or("never said hello".into(), ToString::to_string),
            c.devices.to_string(),
            c.device.to_string(),
        ]);
    }
    print!("{cohorts}");
    println!();
    let mut t = Table::new([
        "WAVE",
        "DEVICES",
        "INSTALL",
        "OVERRIDE",
        "REJECT HW",
        "REJECT SW",
        "UNKNOWN",
        "STARTS",
        "ENDS",
        "GATES",
        "SCHEDULE",
    ]);
    for (i, w) in plan.waves.iter().enumerate() {
        let p = &w.prediction;
        let timing = plan.timing.as_ref().and_then(|t| t.waves.get(i));
        let when = |at: Option<Option<u64>>| match at {
            Some(Some(ms)) => utc_minute(ms),
            Some(None) => "never (no window opens)".into(),
            None => "-".into(),
        };
        t.row([
            (i + 1).to_string(),
            w.devices.len().to_string(),
            p.install.to_string(),
            p.install_with_override.to_string(),
            p.rejected_hardware.to_string(),
            p.rejected_software.to_string(),
            p.unknown.to_string(),
            when(timing.map(|t| t.starts)),
            when(timing.map(|t| t.ends)),
            gates_text(&w.gates),
            schedule_text(&w.schedule),
        ]);
    }
    print!("{t}");
    if let Some(timing) = &plan.timing {
        println!(
            "\nexpected times in UTC, if started now: {} a phone ({}), every gate passing, approvals at once",
            secs_text(timing.job_secs),
            timing.job_basis
        );
    }
    let mut reasons = std::collections::BTreeMap::<&str, usize>::new();
    for w in &plan.waves {
        for (r, n) in &w.prediction.reasons {
            *reasons.entry(r).or_default() += n;
        }
    }
    if !reasons.is_empty() {
        println!("\npredicted rejections:");
        for (r, n) in reasons {
            println!("  {n:>6}  {r}");
        }
    }
}

/// `10 min`, `2 h`, `95 s`.
fn secs_text(secs: u64) -> String {
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// `2026-12-07 19:00Z`.
fn utc_minute(ms: u64) -> String {
    let Ok(ts) = jiff::Timestamp::from_millisecond(ms as i64) else { return ms.to_string() };
    ts.strftime("%Y-%m-%d %H:%MZ").to_string()
}

/// A wave's windows and pace, in the words of their flags.
fn schedule_text(s: &Schedule) -> String {
    let mut parts = Vec::new();
    let list = |w: &[Window]| w.iter().map(ToString::to_string).collect::<Vec<_>>().join(" + ");
    if !s.windows.is_empty() {
        parts.push(format!("commands {}", list(&s.windows)));
    }
    if !s.install_windows.is_empty() {
        parts.push(format!("installs {}", list(&s.install_windows)));
    }
    if let Some(r) = s.rate {
        parts.push(format!("rate {r}"));
    }
    if let Some(r) = s.ramp {
        parts.push(format!("ramp {r}"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn gates_text(g: &Gates) -> String {
    let mut parts = vec![format!("success>={:.0}%", g.success_ratio * 100.0)];
    parts.push(format!(
        "failures>{:.0}% (min {}) {}",
        g.failure_ratio * 100.0,
        g.failure_min_finished,
        if g.on_failure == GateAction::Abort { "abort" } else { "pause" }
    ));
    if let Some(r) = g.rejection_ratio {
        parts.push(format!("rejections>{:.0}%", r * 100.0));
    }
    if g.soak_secs > 0 {
        parts.push(format!("soak {}s", g.soak_secs));
    }
    parts.push(format!("timeout {}s", g.device_timeout_secs));
    if let Some(m) = g.max_concurrent {
        parts.push(format!("max {m} at once"));
    }
    if g.approval {
        parts.push("approval".into());
    }
    for a in &g.analyses {
        parts.push(format!("analysis {} {} ({}x every {}s)", a.name, a.success, a.count, a.interval_secs));
    }
    parts.join(", ")
}

pub(crate) fn print_status(s: &RolloutStatus) {
    let r = &s.rollout;
    println!(
        "rollout {}  image {}  override {}  seed {}",
        r.id,
        s.image.as_ref().map_or(r.image.to_string(), |i| format!("{} ({})", i.software_version, i.sha256.short())),
        if r.override_compat { "yes" } else { "no" },
        r.seed
    );
    println!("state: {}", state_line(&r.state, r.waves.len()));
    let mut waves = Table::new([
        "WAVE",
        "DEVICES",
        "SUCCEEDED",
        "REJ HW",
        "REJ SW",
        "FAILED",
        "TIMED OUT",
        "CANCELLED",
        "DOWNLOADED",
        "OPEN",
        "GATES",
    ]);
    for w in &s.waves {
        let c = |o| w.counts.get(&o).copied().unwrap_or(0).to_string();
        let open = crate::model::open_in(&w.counts);
        waves.row([
            w.number.to_string(),
            w.wave.devices.to_string(),
            c(Outcome::Succeeded),
            c(Outcome::RejectedHardware),
            c(Outcome::RejectedSoftware),
            c(Outcome::Failed),
            c(Outcome::TimedOut),
            c(Outcome::Cancelled),
            c(Outcome::Downloaded),
            open.to_string(),
            gates_text(&w.wave.gates),
        ]);
    }
    println!();
    print!("{waves}");
    if !s.gates.is_empty() {
        let readings: Vec<String> = s
            .gates
            .iter()
            .map(|g| {
                let bound = if g.gate == crate::engine::gates::Gate::Success { ">=" } else { "<=" };
                format!("{} {:.1}% ({bound} {:.1}%)", g.gate.as_str(), g.observed * 100.0, g.threshold * 100.0)
            })
            .collect();
        println!("gates now: {}", readings.join(", "));
    }
    for a in &s.analyses {
        let last = a.last_value.map_or("-".into(), |v| v.to_string());
        println!(
            "analysis {} (wave {}): {} of {} measured, {} failed ({} tolerated), last {last}, must be {}: {}",
            a.name,
            a.wave + 1,
            a.measured,
            a.count,
            a.failed,
            a.failure_limit,
            a.condition,
            a.query
        );
    }
    if !s.reasons.is_empty() {
        println!();
        let mut reasons = Table::new(["OUTCOME", "DEVICES", "REASON", "FOR EXAMPLE"]);
        for g in &s.reasons {
            let examples: Vec<&str> = g.examples.iter().map(|d| d.as_str()).collect();
            reasons.row([g.outcome.as_str().to_string(), g.devices.to_string(), g.text.clone(), examples.join(", ")]);
        }
        print!("{reasons}");
    }
    println!();
    let mut t = Table::new(["DEVICE", "WAVE", "OUTCOME", "RUNNING", "REASON"]);
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
            JobPhase::TimedOut => ("-".into(), "no final report within the device timeout".into()),
            JobPhase::Pending | JobPhase::Sent | JobPhase::Cancelled => ("-".into(), String::new()),
        };
        let attempt = if j.attempt > 1 { format!(" (attempt {})", j.attempt) } else { String::new() };
        t.row([
            j.device.to_string(),
            (j.wave + 1).to_string(),
            format!("{}{attempt}", j.phase.outcome().as_str()),
            running,
            reason,
        ]);
    }
    print!("{t}");
}

/// Live view: a bar per wave and the gate status; on a terminal it redraws, elsewhere it prints a line per
/// change.
async fn watch(api: &ApiClient, id: &str) -> Result<(), ControllerError> {
    let tty = std::io::stderr().is_terminal();
    let multi = indicatif::MultiProgress::new();
    if !tty {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style = indicatif::ProgressStyle::with_template("wave {prefix:>2} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    let header = multi.add(indicatif::ProgressBar::new_spinner());
    let mut bars: Vec<indicatif::ProgressBar> = Vec::new();
    let mut last = String::new();
    loop {
        let s = api.rollout_counts(id).await?;
        let line = state_line(&s.rollout.state, s.rollout.waves.len());
        let c = |o| s.counts.get(&o).copied().unwrap_or(0);
        let counts = format!(
            "succeeded {}  rejected hw {} sw {}  failed {}  timed out {}  cancelled {}  in progress {}  downloaded {}  \
             pending {}",
            c(Outcome::Succeeded),
            c(Outcome::RejectedHardware),
            c(Outcome::RejectedSoftware),
            c(Outcome::Failed),
            c(Outcome::TimedOut),
            c(Outcome::Cancelled),
            c(Outcome::InProgress),
            c(Outcome::Downloaded),
            c(Outcome::Pending)
        );
        header.set_message(format!("{}: {line}\n{counts}", s.rollout.id));
        while bars.len() < s.waves.len() {
            let b = multi.add(indicatif::ProgressBar::new(0));
            b.set_style(style.clone());
            bars.push(b);
        }
        for (b, w) in bars.iter().zip(&s.waves) {
            let done = w.wave.devices.saturating_sub(crate::model::open_in(&w.counts));
            b.set_prefix(w.number.to_string());
            b.set_length(w.wave.devices as u64);
            b.set_position(done as u64);
            let f = |o| w.counts.get(&o).copied().unwrap_or(0);
            b.set_message(format!(
                "ok {} | rej {} | failed {} | in flight {} | downloaded {}",
                f(Outcome::Succeeded),
                f(Outcome::RejectedHardware) + f(Outcome::RejectedSoftware),
                f(Outcome::Failed) + f(Outcome::TimedOut),
                f(Outcome::InProgress),
                f(Outcome::Downloaded)
            ));
        }
        if !tty && format!("{line} {counts}") != last {
            println!("{}: {line} | {counts}", s.rollout.id);
            last = format!("{line} {counts}");
        }
        if s.rollout.state.is_over() {
            header.finish();
            for b in &bars {
                b.finish();
            }
            if tty {
                println!("{}: {line}", s.rollout.id);
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(parse_ratio("95%").unwrap(), 0.95);
        assert_eq!(parse_ratio("0.5").unwrap(), 0.5);
        assert!(parse_ratio("150%").is_err() && parse_ratio("x").is_err());
        assert_eq!(parse_duration("30m").unwrap(), 1800);
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(parse_duration("2h").unwrap(), 7200);
        assert!(parse_duration("soon").is_err());
        let e = parse_duration("18446744073709551s").unwrap_err();
        assert!(e.contains("longer than a year"), "{e}");
        let (n, o) = parse_wave_gates("2:soak=1h,success=99%,approval=true,max-concurrent=5,rejection=20%").unwrap();
        assert_eq!((n, o.soak_secs, o.approval, o.max_concurrent), (2, Some(3600), Some(true), Some(5)));
        assert_eq!(o.rejection_ratio, Some(0.2));
        let g = Gates::default().with(&o);
        assert_eq!((g.soak_secs, g.rejection_ratio, g.success_ratio), (3600, Some(0.2), 0.99));
        assert_eq!(g.failure_ratio, Gates::default().failure_ratio, "what the wave does not override stays");
        assert!(parse_wave_gates("0:soak=1h").is_err());
        assert!(parse_wave_gates("1:speed=fast").unwrap_err().contains("unknown wave gate"));
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_795_624_248_000), "2026-11-25 16:30:48");
    }

    #[test]
    fn durations_may_combine_units() {
        assert_eq!(parse_duration("1h30m").unwrap(), 5400);
        assert_eq!(parse_duration("1d").unwrap(), 86400);
        assert_eq!(parse_duration("0s").unwrap(), 0);
    }
}
