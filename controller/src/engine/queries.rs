//! Read-only views of the engine, for the API, the metrics and the core's timer.

use super::{Engine, EngineError, Live};
use crate::model::{AuditEntry, Device, Image, ImageId, Job, Millis, Rollout, RolloutId, RolloutState, Stage, Tally};

impl Engine {
    /// An image by its SHA-256 or an unambiguous prefix of at least 6 characters.
    pub fn find_image(&self, sha: &str) -> Result<&Image, EngineError> {
        let sha = sha.to_ascii_lowercase();
        if sha.len() < 6 {
            return Err(EngineError::UnknownImage(sha));
        }
        let mut matches = self
            .images
            .range::<str, _>((std::ops::Bound::Included(sha.as_str()), std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.as_str().starts_with(&sha));
        match (matches.next(), matches.next()) {
            (Some((_, image)), None) => Ok(image),
            (Some(_), Some(_)) => Err(EngineError::AmbiguousImage(sha)),
            (None, _) => Err(EngineError::UnknownImage(sha)),
        }
    }

    /// An image by its id.
    pub fn image(&self, id: &ImageId) -> Option<&Image> {
        self.images.get(id)
    }

    /// Every device that ever said hello or came online, by id.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    /// Every image, by id.
    pub fn images(&self) -> impl Iterator<Item = &Image> {
        self.images.values()
    }

    /// Every rollout, oldest first.
    pub fn rollouts(&self) -> impl Iterator<Item = &Rollout> {
        self.rollouts.values().map(|l| &l.rollout)
    }

    /// A rollout by its id.
    pub fn rollout(&self, id: &RolloutId) -> Option<&Rollout> {
        self.rollouts.get(id).map(|l| &l.rollout)
    }

    /// A rollout's jobs, by device: those written, and those its members never commanded have by implication.
    pub fn jobs_of(&self, id: &RolloutId) -> impl Iterator<Item = Job> + '_ {
        self.rollouts.get(id).into_iter().flat_map(|l| l.all_jobs()).map(std::borrow::Cow::into_owned)
    }

    /// A page of a rollout's jobs in plan order: at most `limit`, after plan order `after` (from the start
    /// without it), and the `after` of the next page if there is one.
    pub fn jobs_page(&self, id: &RolloutId, after: Option<u32>, limit: usize) -> (Vec<Job>, Option<u32>) {
        let Some(live) = self.rollouts.get(id) else { return (Vec::new(), None) };
        let start = after.map_or(0, |a| live.by_order.partition_point(|(o, _)| *o <= a));
        let page = &live.by_order[start..(start.saturating_add(limit)).min(live.by_order.len())];
        let jobs: Vec<Job> = page.iter().filter_map(|(_, d)| live.job(d).map(std::borrow::Cow::into_owned)).collect();
        let more = start + page.len() < live.by_order.len();
        let next = page.last().map(|(o, _)| *o).filter(|_| more);
        (jobs, next)
    }

    /// Outcome counts of a whole rollout.
    pub fn tally(&self, id: &RolloutId) -> Tally {
        self.rollouts.get(id).map(Live::total).unwrap_or_default()
    }

    /// Outcome counts per wave.
    pub fn wave_tallies(&self, id: &RolloutId) -> Vec<Tally> {
        self.rollouts.get(id).map(|l| l.tallies.clone()).unwrap_or_default()
    }

    /// The audit log, oldest first; only one rollout's entries with `rollout`.
    pub fn audit(&self, rollout: Option<&RolloutId>) -> impl Iterator<Item = &AuditEntry> {
        let rollout = rollout.copied();
        self.audit.iter().filter(move |a| rollout.is_none() || a.rollout == rollout)
    }

    /// The earliest moment a [`Input::Tick`](super::Input::Tick) can change anything: a device deadline, the
    /// end of a soak, or the next check of the devices' heartbeats.
    pub fn next_deadline(&self) -> Option<Millis> {
        // A soak's end, unless the wave also waits for its analyses (their measurements are due then).
        let soak = self.rollouts.iter().filter_map(|(n, l)| match l.rollout.state {
            RolloutState::Active { wave, stage: Stage::Soaking { until } } if self.analysis_done(*n, wave) => {
                Some(until)
            }
            _ => None,
        });
        // Dispatch held back by a closed window or the rate, in rollouts under way.
        let wake = self.rollouts.values().filter_map(|l| match l.rollout.state {
            RolloutState::Active { stage: Stage::Updating, .. } => l.wake_at,
            _ => None,
        });
        let deadlines = self.deadlines.iter().next().map(|(d, ..)| *d).into_iter().chain(soak).chain(wake);
        deadlines.chain(self.liveness_at).chain(self.next_measurement()).min()
    }
}
