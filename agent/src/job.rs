//! One job's work, in a task of its own so the agent's loop stays responsive: download and verify the bind
//! (bounded by the job's time limit), install it into the inactive slot and switch, and, with a health check
//! configured, let the phone restart and check its health. It talks to the loop only through [`JobEvent`]s;
//! every decision about what a job's end means is the core's.

use std::path::PathBuf;
use std::time::Duration;

use bindwave_proto::window::{install_at, InstallAt};
use bindwave_proto::wire::{DeviceId, JobState, Reason, Report, UpdateCommand};
use bindwave_proto::{DeviceProfile, SoftwareVersion};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{AccessSettings, HealthSettings, Identity, InstallerSettings};
use crate::core::progress;
use crate::fetch::{fetch, Fetched};
use crate::journal::AwaitingHealth;
use crate::slots::Slots;
use crate::transport::Transport;
use crate::trust::ReleaseTrust;

/// What the running job tells the loop.
///
/// Boxed: a channel keeps a block of 32 messages from its start, and a simulated fleet keeps a channel a phone.
pub(crate) enum JobEvent {
    Progress(Box<Report>),
    /// Installed and switched: journal it, then answer on `ack`, before the restart.
    Installed {
        pending: Box<AwaitingHealth>,
        ack: oneshot::Sender<()>,
    },
    Done(Box<Report>),
}

/// The span a job runs in: every line logged about the job carries its id, its rollout and the phone, so one
/// phone's story can be followed in a log shipper (`--log-format json`).
pub(crate) fn job_span(job_id: &str, rollout_id: &str, device: &DeviceId) -> tracing::Span {
    tracing::info_span!("job", job_id = %job_id, rollout_id = %rollout_id, device = %device)
}

/// One job, run in a task of its own so the loop stays responsive.
pub(crate) struct Job {
    /// The download and verification must end within `limit` of `started`.
    pub limit: Duration,
    pub started: std::time::SystemTime,
    pub identity: Identity,
    pub access: Option<AccessSettings>,
    pub installer: InstallerSettings,
    pub health: HealthSettings,
    /// The factory version: what a rollback to no slot runs.
    pub factory: SoftwareVersion,
    pub transport: Transport,
    pub policy: crate::fetch::RetryPolicy,
    pub profile: DeviceProfile,
    /// The release keys a bind must be signed with.
    pub release: ReleaseTrust,
    pub slots: Slots,
    pub download_dir: PathBuf,
    /// Whether the download is synced (always on a phone).
    pub durability: crate::storage::Durability,
    /// The version that runs as the job starts: the running version of a job that fails.
    pub running: SoftwareVersion,
    pub tx: mpsc::UnboundedSender<JobEvent>,
    /// Set by the controller's cancel: the job stops if it has not begun to install.
    pub cancel: watch::Receiver<bool>,
}

impl Job {
    /// Works the job to its end and sends its final report.
    pub(crate) async fn run(self, cmd: UpdateCommand) {
        let report = self.work(&cmd).await;
        let _ = self.tx.send(JobEvent::Done(Box::new(report)));
    }

    /// The job's final report: what became of it, or `cancelled` if the cancel came before the install began.
    async fn work(&self, cmd: &UpdateCommand) -> Report {
        let cancelled = || Report {
            running_version: Some(self.running.clone()),
            ..progress(&cmd.job_id, JobState::Cancelled, None)
        };
        let tx = self.tx.clone();
        let job_id = cmd.job_id.clone();
        let stage = std::sync::Arc::new(std::sync::Mutex::new(JobState::Received));
        let seen = stage.clone();
        let mut on_progress = move |state, percent| {
            if let Ok(mut s) = seen.lock() {
                *s = state;
            }
            drop(tx.send(JobEvent::Progress(Box::new(progress(&job_id, state, percent)))))
        };
        let resolved = resolve(cmd, self.access.as_ref());
        let credentials = match (&self.access, cmd.use_defaults) {
            (Some(a), true) => a.user.clone().map(|u| (u, a.password.clone())),
            _ => None,
        };
        let elapsed = self.started.elapsed().unwrap_or_default();
        let counters = crate::fetch::Counters::default();
        let began = std::time::Instant::now();
        let fetched = match &resolved {
            Ok(cmd) => {
                let fetching = fetch(
                    &self.transport,
                    &credentials,
                    cmd,
                    &self.profile,
                    &self.release,
                    &self.download_dir,
                    self.policy,
                    &counters,
                    self.durability,
                    &mut on_progress,
                );
                let limited = tokio::time::timeout(self.limit.saturating_sub(elapsed), fetching);
                let mut cancel = self.cancel.clone();
                let outcome = tokio::select! {
                    outcome = limited => outcome,
                    () = until_cancelled(&mut cancel) => {
                        // Stopped: the partial download goes, its retries with it; nothing was installed.
                        crate::fetch::remove(&crate::fetch::download_path(&self.download_dir, &cmd.job_id));
                        tracing::info!(job = %cmd.job_id, "cancelled by the controller before the install");
                        return cancelled();
                    }
                };
                match outcome {
                    Ok(fetched) => fetched,
                    Err(_) => {
                        // Abandoned: the partial download goes, nothing was installed.
                        let file = crate::fetch::download_path(&self.download_dir, &cmd.job_id);
                        let received = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                        crate::fetch::remove(&file);
                        let during = match stage.lock().map(|s| *s) {
                            Ok(JobState::Verifying) => JobState::Verifying,
                            _ => JobState::Downloading,
                        };
                        tracing::warn!(job = %cmd.job_id, limit_secs = self.limit.as_secs(), "job timed out while {during}");
                        Fetched::Failed(Reason::TimedOut { limit_secs: self.limit.as_secs(), during, received })
                    }
                }
            }
            Err(reason) => Fetched::Failed(reason.clone()),
        };
        let download = resolved.is_ok().then(|| counters.stats(began.elapsed()));
        let final_report = |state, running: &SoftwareVersion, reason: Option<Reason>, override_used| Report {
            job_id: cmd.job_id.clone(),
            state,
            progress: None,
            running_version: Some(running.clone()),
            reason,
            override_used,
            download,
        };
        let report = match fetched {
            Fetched::Rejected(mut reason) => {
                if let Reason::HardwareLevelIncompatible { level_source, level_conflict, .. } = &mut reason {
                    *level_source = Some(self.identity.source);
                    *level_conflict = self.identity.conflict;
                }
                final_report(JobState::Rejected, &self.running, Some(reason), false)
            }
            Fetched::Failed(reason) => final_report(JobState::Failed, &self.running, Some(reason), false),
            Fetched::Verified { verified, file, override_used } => {
                match self.wait_for_window(cmd, &mut on_progress).await {
                    Waited::Install => {}
                    Waited::Cancelled => {
                        crate::fetch::remove(&file);
                        tracing::info!(job = %cmd.job_id, "cancelled by the controller before the install");
                        return cancelled();
                    }
                    Waited::Passed(reason) => {
                        crate::fetch::remove(&file);
                        tracing::warn!(job = %cmd.job_id, "{reason}");
                        return final_report(JobState::Failed, &self.running, Some(reason), false);
                    }
                }
                on_progress(JobState::Installing, None);
                let previous = self.slots.active().ok().flatten();
                let version = verified.header.software_version.clone();
                let len = verified.header.payload_len;
                let offset = verified.file_len - len;
                let installed = install(&self.slots, &self.installer, &file, offset, len, &version, &cmd.job_id).await;
                crate::fetch::remove(&file);
                match installed {
                    Ok(active) if self.health.configured() => {
                        let pending =
                            AwaitingHealth { job_id: cmd.job_id.clone(), installed: active, previous, override_used };
                        let (ack, acked) = oneshot::channel();
                        let _ = self.tx.send(JobEvent::Installed { pending: Box::new(pending.clone()), ack });
                        let _ = acked.await;
                        on_progress(JobState::Restarting, None);
                        if let Some(reboot) = &self.health.reboot_command {
                            // On a phone this does not return: the agent starts again and checks health then.
                            if let Err(e) = crate::hooks::run(reboot, &[], Duration::from_secs(120)).await {
                                tracing::warn!(job = %cmd.job_id, "reboot command failed: {e}; checking health now");
                            }
                        }
                        check_health(&self.health, &self.slots, &pending, &self.factory).await
                    }
                    Ok(active) => final_report(JobState::Succeeded, &active.version, None, override_used),
                    Err(detail) => final_report(
                        JobState::Failed,
                        &self.running,
                        Some(Reason::InstallFailed { detail }),
                        override_used,
                    ),
                }
            }
        };
        report
    }

    /// Holds a verified bind until an install window of the command is open (at once if it carries none),
    /// reporting `downloaded` while it waits; the wall clock is read again at least every minute, so a clock
    /// set while waiting is followed. The cancel flag is read last, so an install that begins was not
    /// cancelled before.
    async fn wait_for_window(
        &self,
        cmd: &UpdateCommand,
        on_progress: &mut (dyn FnMut(JobState, Option<u8>) + Send),
    ) -> Waited {
        let mut cancel = self.cancel.clone();
        let mut reported = false;
        loop {
            if *cancel.borrow() {
                return Waited::Cancelled;
            }
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let wait = match install_at(&cmd.install_windows, now) {
                InstallAt::Now => return Waited::Install,
                InstallAt::Passed { last_until } => return Waited::Passed(Reason::InstallWindowsPassed { last_until }),
                InstallAt::At(at) => Duration::from_secs(at.saturating_sub(now).clamp(1, 60)),
            };
            if !reported {
                tracing::info!(job = %cmd.job_id, "downloaded and verified; installing when the window opens");
                on_progress(JobState::Downloaded, None);
                reported = true;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = until_cancelled(&mut cancel) => {}
            }
        }
    }
}

/// What waiting for the install window came to.
enum Waited {
    Install,
    Cancelled,
    /// Every window the command carried has passed.
    Passed(Reason),
}

/// Returns once the job is cancelled (never, if the driver that could cancel it is gone).
async fn until_cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Runs the health check of an install and reports: `succeeded` if healthy (or if there is no check), else
/// switches back to the previous version and reports `rolled_back`.
pub(crate) async fn check_health(
    health: &HealthSettings,
    slots: &Slots,
    pending: &AwaitingHealth,
    factory: &SoftwareVersion,
) -> Report {
    let report = |state, running: &SoftwareVersion, reason| Report {
        job_id: pending.job_id.clone(),
        state,
        progress: None,
        running_version: Some(running.clone()),
        reason,
        override_used: pending.override_used,
        download: None,
    };
    let Some(check) = &health.check_command else {
        return report(JobState::Succeeded, &pending.installed.version, None);
    };
    let env = [("BINDWAVE_JOB", pending.job_id.clone()), ("BINDWAVE_VERSION", pending.installed.version.to_string())];
    let timeout = Duration::from_secs(health.check_timeout_secs.unwrap_or(60));
    match crate::hooks::run(check, &env, timeout).await {
        Ok(()) => report(JobState::Succeeded, &pending.installed.version, None),
        Err(detail) => {
            let back = pending.previous.as_ref().map_or_else(|| factory.clone(), |a| a.version.clone());
            match slots.restore(pending.previous.as_ref()) {
                Ok(()) => report(JobState::RolledBack, &back, Some(Reason::HealthCheckFailed { detail })),
                Err(e) => report(
                    JobState::Failed,
                    &pending.installed.version,
                    Some(Reason::HealthCheckFailed {
                        detail: format!("{detail}; and the switch back failed: {}", crate::error::chain(&e)),
                    }),
                ),
            }
        }
    }
}

/// Stages the payload in the inactive slot, runs the configured installer on it if there is one, and switches
/// to the slot if all went well. The error says what failed.
async fn install(
    slots: &Slots,
    installer: &InstallerSettings,
    bind: &std::path::Path,
    offset: u64,
    len: u64,
    version: &SoftwareVersion,
    job_id: &str,
) -> Result<crate::slots::Active, String> {
    let (s, b) = (slots.clone(), bind.to_path_buf());
    let staged = tokio::task::spawn_blocking(move || s.stage(&b, offset, len)).await.map_err(|e| e.to_string())?;
    let (slot, payload) = staged.map_err(|e| crate::error::chain(&e))?;
    if let Some(cmd) = &installer.command {
        let path = payload.display().to_string();
        let argv: Vec<String> = cmd.iter().map(|a| a.replace("{payload}", &path)).collect();
        let env = [
            ("BINDWAVE_PAYLOAD", path),
            ("BINDWAVE_VERSION", version.to_string()),
            ("BINDWAVE_JOB", job_id.to_string()),
        ];
        let timeout = Duration::from_secs(installer.timeout_secs.unwrap_or(600));
        crate::hooks::run(&argv, &env, timeout).await.map_err(|e| format!("the installer failed: {e}"))?;
    }
    let (s, v, j) = (slots.clone(), version.clone(), job_id.to_string());
    let switched = tokio::task::spawn_blocking(move || s.switch(slot, &v, &j)).await.map_err(|e| e.to_string())?;
    switched.map_err(|e| crate::error::chain(&e))
}

/// The command with a full URL: as it came, or, with "use defaults", built from the default access settings.
fn resolve(cmd: &UpdateCommand, access: Option<&AccessSettings>) -> Result<UpdateCommand, Reason> {
    if !cmd.use_defaults {
        return Ok(cmd.clone());
    }
    let invalid = |detail: String| Reason::InvalidCommand { detail };
    let access = access
        .ok_or_else(|| invalid("the command says use defaults, but the agent has no [access] settings".into()))?;
    let url = access.url_for(&cmd.url).map_err(invalid)?;
    Ok(UpdateCommand { url, ..cmd.clone() })
}
