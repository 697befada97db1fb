//! Read-only views of the engine, for the API, the metrics and the core's timer.

use std::collections::BTreeMap;

use bindwave_proto::wire::DeviceId;

use super::{Engine, EngineError, Live};
use crate::model::{
    AuditEntry, Device, Image, ImageId, Job, JobPhase, Millis, Outcome, ReasonGroup, Rollout, RolloutId, RolloutState,
    Stage, Tally, EXAMPLES,
};

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

    /// One device, by id.
    pub fn device(&self, id: &DeviceId) -> Option<&Device> {
        self.devices.get(id)
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

    /// A device's jobs in every rollout it belongs to, oldest rollout first.
    pub fn device_jobs(&self, device: &DeviceId) -> Vec<Job> {
        self.rollouts.values().filter_map(|l| l.job(device)).map(std::borrow::Cow::into_owned).collect()
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

    /// A rollout's rejections, failures and time-outs, grouped by outcome, reason code and words, the largest
    /// group first. Only commanded devices have one, so this reads the jobs written, never the implied ones.
    pub fn reason_groups(&self, id: &RolloutId) -> Vec<ReasonGroup> {
        let Some(live) = self.rollouts.get(id) else { return Vec::new() };
        let mut groups: BTreeMap<(Outcome, &'static str, String), (usize, Vec<DeviceId>)> = BTreeMap::new();
        for (device, job) in &live.jobs {
            let (code, text) = match (job.phase.reason(), &job.phase) {
                (Some(reason), _) => (reason.code(), reason.to_string()),
                (None, JobPhase::TimedOut) => {
                    ("timed_out", "no final report within the wave's device timeout".to_string())
                }
                _ => continue,
            };
            let group = groups.entry((job.phase.outcome(), code, text)).or_default();
            group.0 += 1;
            if group.1.len() < EXAMPLES {
                group.1.push(device.clone());
            }
        }
        let mut groups: Vec<ReasonGroup> = groups
            .into_iter()
            .map(|((outcome, code, text), (devices, examples))| ReasonGroup {
                outcome,
                code: code.to_string(),
                text,
                devices,
                examples,
            })
            .collect();
        groups.sort_by_key(|g| std::cmp::Reverse(g.devices));
        groups
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::{create, failed, fleet, op, rejected_hw, spec, succeeded};
    use crate::engine::{Action, Input};
    use crate::model::Gates;

    #[test]
    fn reasons_are_grouped_by_outcome_code_and_words_the_largest_first() {
        let mut e = fleet(10);
        let gates = Gates { failure_ratio: 1.0, ..Gates::default() };
        let r = create(&mut e, spec(&["100%"], gates));
        op(&mut e, &r, Action::Start, 1).unwrap();
        let jobs: Vec<_> = e.jobs_of(&r).map(|j| (j.device.clone(), j.id().to_string())).collect();
        for (i, (device, job)) in jobs.iter().enumerate() {
            let report = match i {
                0..=6 => rejected_hw(job),
                7 | 8 => failed(job),
                _ => succeeded(job),
            };
            e.handle(Input::Report(device.clone(), report), 2).unwrap();
        }
        let groups = e.reason_groups(&r);
        assert_eq!(groups.len(), 2, "{groups:#?}");
        let (rejected, failed) = (&groups[0], &groups[1]);
        assert_eq!(
            (rejected.outcome, rejected.code.as_str(), rejected.devices),
            (Outcome::RejectedHardware, "hardware_level_incompatible", 7)
        );
        assert!(rejected.text.contains("hardware level 2") && rejected.text.contains('3'), "{}", rejected.text);
        assert_eq!(rejected.examples.len(), EXAMPLES);
        assert_eq!((failed.outcome, failed.code.as_str(), failed.devices), (Outcome::Failed, "checksum_mismatch", 2));
        assert_eq!(failed.examples.len(), 2);
        assert!(e.reason_groups(&RolloutId::from(99)).is_empty());
    }

    #[test]
    fn a_device_keeps_what_its_hellos_changed_across_hellos() {
        let mut e = fleet(2);
        let d = crate::engine::testkit::id("d000");
        let hello = |v: &str| Input::Hello(crate::engine::testkit::hello("d000", 3, v));
        e.handle(hello("V3 R1.0.0"), 5).unwrap();
        assert!(e.device(&d).unwrap().changes.is_empty(), "the same version again");
        e.handle(hello("V3 R3.18.0"), 6).unwrap();
        e.handle(hello("V3 R3.18.0"), 7).unwrap();
        let (_, fx) = e.handle(hello("V3 R4.2.0"), 8).unwrap();
        let changes = &e.device(&d).unwrap().changes;
        let seen: Vec<(u64, String)> = changes.iter().map(|c| (c.at, c.to_version.to_string())).collect();
        assert_eq!(seen, [(6, "V3 R3.18.0".to_string()), (8, "V3 R4.2.0".to_string())]);
        // The record written carries it, so a restart keeps it.
        let written = fx.persist.iter().find_map(|r| match r {
            crate::engine::Record::Device(dev) => Some(dev.changes.clone()),
            _ => None,
        });
        assert_eq!(written.as_ref(), Some(changes));
        assert!(e.device(&crate::engine::testkit::id("d001")).unwrap().changes.is_empty());
    }
}
