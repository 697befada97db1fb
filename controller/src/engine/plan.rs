//! Drawing a rollout's targets into waves, predicting what they will say, and creating the rollout.

use std::collections::BTreeMap;

use bindwave_proto::compat::{decide, Decision, Rejection};
use bindwave_proto::wire::{DeviceId, Hello};
use bindwave_proto::{BindHeader, DeviceProfile, HardwareLevel, SoftwareVersion};
use serde::{Deserialize, Serialize};

use super::{Effects, Engine, EngineError, Live, Place, Record};
use crate::model::{
    Baseline, Device, Gates, Image, Members, Millis, Outcome, Rollout, RolloutId, RolloutSpec, RolloutState, Schedule,
    Wave, WaveSize, WaveSpec, MEMBERS_PER_RECORD,
};

/// A rollout's plan: who is in which wave, and what the inventory predicts they will say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    /// The image the spec names.
    pub image: Image,
    /// The seed the waves were drawn with (the spec's, or the one given).
    pub seed: u64,
    /// Distinct (hardware level, running software version) pairs among the targets; wave 1 holds one of each.
    pub cohorts: usize,
    /// The cohorts themselves, the largest first: each pair, the device of it wave 1 takes, and how many of
    /// the targets share it.
    #[serde(default)]
    pub canary: Vec<Cohort>,
    /// The waves, in order.
    pub waves: Vec<PlannedWave>,
    /// When each wave is expected to start and end (see [`Engine::forecast`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
}

/// When a plan's waves are expected to start and end, if created and started at `from`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Timing {
    pub from: Millis,
    /// The time a phone was taken to need from its command to its outcome...
    pub job_secs: u64,
    /// ...and where that came from: `median of N finished jobs`, or `assumed` (none finished yet).
    pub job_basis: String,
    pub waves: Vec<crate::schedule::forecast::WaveTiming>,
}

/// The time a phone is taken to need when no job has finished yet: ten minutes.
const ASSUMED_JOB: Millis = 10 * 60 * 1000;

/// One cohort of a plan's targets: devices at one hardware level running one version (both absent for
/// devices that never said hello).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cohort {
    pub hardware_level: Option<HardwareLevel>,
    pub software_version: Option<SoftwareVersion>,
    /// The one of them in the canary (wave 1).
    pub device: DeviceId,
    /// Targets in the cohort.
    pub devices: usize,
}

/// One wave of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlannedWave {
    /// The wave's devices, in dispatch order.
    pub devices: Vec<DeviceId>,
    /// The rollout's gates with the wave's overrides.
    pub gates: Gates,
    /// The rollout's schedule with the wave's overrides.
    #[serde(default, skip_serializing_if = "Schedule::is_empty")]
    pub schedule: Schedule,
    /// What the devices are expected to say.
    pub prediction: Prediction,
}

/// What the compatibility rule predicts from the devices' hello messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Prediction {
    /// Would install.
    pub install: usize,
    /// Would reject, but Override is set.
    pub install_with_override: usize,
    /// Would reject the image's hardware levels.
    pub rejected_hardware: usize,
    /// Would reject the image's version as below their minimum.
    pub rejected_software: usize,
    /// Devices that never said hello: nothing to predict from.
    pub unknown: usize,
    /// Why, grouped: reason text -> devices.
    pub reasons: BTreeMap<String, usize>,
}

/// A small, fixed pseudo-random generator (SplitMix64): the same seed draws the same waves on every build.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fisher-Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// The header the rule sees for an image: its version and hardware levels (the rule reads nothing else).
fn prediction_header(image: &Image) -> BindHeader {
    BindHeader::new(image.software_version.clone(), image.hardware_levels.clone(), image.payload_len, [0; 32])
}

/// A device as the rule sees it, from its hello.
fn profile(hello: &Hello) -> DeviceProfile {
    DeviceProfile {
        hardware_level: hello.hardware_level,
        minimum_software_version: hello.minimum_software_version.clone(),
    }
}

/// What the rule predicts for one (hardware level, minimum software version) pair, with the rejection's
/// text, made once.
enum Expected {
    Install,
    InstallWithOverride,
    RejectedHardware(String),
    RejectedSoftware(String),
}

impl Expected {
    fn of(decision: Decision) -> Expected {
        match decision {
            Decision::Proceed { overridden: None, .. } => Expected::Install,
            Decision::Proceed { overridden: Some(_), .. } => Expected::InstallWithOverride,
            Decision::Reject { rejection: r @ Rejection::HardwareLevelIncompatible { .. }, .. } => {
                Expected::RejectedHardware(r.to_string())
            }
            Decision::Reject { rejection: r @ Rejection::SoftwareLevelBelowMinimum { .. }, .. } => {
                Expected::RejectedSoftware(r.to_string())
            }
        }
    }
}

impl Prediction {
    fn count(&mut self, expected: &Expected) {
        let reason = match expected {
            Expected::Install => return self.install += 1,
            Expected::InstallWithOverride => return self.install_with_override += 1,
            Expected::RejectedHardware(reason) => {
                self.rejected_hardware += 1;
                reason
            }
            Expected::RejectedSoftware(reason) => {
                self.rejected_software += 1;
                reason
            }
        };
        match self.reasons.get_mut(reason) {
            Some(n) => *n += 1,
            None => {
                self.reasons.insert(reason.clone(), 1);
            }
        }
    }
}

impl Engine {
    /// Plans a rollout without creating it: the targets, drawn into waves, and what the inventory predicts.
    ///
    /// Wave 1 is a canary that covers the fleet's variety: one device of every (hardware level, running
    /// software version) cohort among the targets, then random devices up to its size. Later waves take the
    /// rest in a random order. The draw depends only on the targets and the seed.
    pub fn plan(&self, spec: &RolloutSpec, seed: u64) -> Result<Plan, EngineError> {
        let image = self.find_image(&spec.image)?.clone();
        self.release.check(&image)?;
        let seed = spec.seed.unwrap_or(seed);
        spec.gates.validate().map_err(EngineError::BadRequest)?;
        let analyses = !spec.gates.analyses.is_empty()
            || spec.waves.iter().any(|w| w.gates.analyses.as_ref().is_some_and(|a| !a.is_empty()));
        if analyses && !self.analysis {
            return Err(EngineError::BadRequest(
                "an analysis gate needs a Prometheus to query: set prometheus_url in the controller's config \
                 (or --prometheus-url on `bindwave serve`)"
                    .into(),
            ));
        }
        if let Some(zone) = &spec.timezone {
            crate::schedule::zone(zone).map_err(|e| EngineError::BadRequest(format!("timezone: {e}")))?;
        }
        if let Some(unknown) = spec.targets.devices.iter().find(|d| !self.devices.contains_key(*d)) {
            return Err(EngineError::UnknownDevice(unknown.to_string()));
        }
        let mut targets: Vec<&Device> = self.devices.values().filter(|d| spec.targets.matches(d)).collect();
        if targets.is_empty() {
            return Err(EngineError::EmptyRollout);
        }
        let total = targets.len();
        let mut rng = SplitMix64(seed);
        rng.shuffle(&mut targets);

        // The canary: the first of each cohort in the shuffled order.
        let key = |d: &Device| d.hello.as_ref().map(|h| (h.hardware_level, h.software_version.clone()));
        let mut sizes: BTreeMap<Option<(HardwareLevel, SoftwareVersion)>, usize> = BTreeMap::new();
        let (mut canary, mut rest): (Vec<&Device>, Vec<&Device>) = (Vec::new(), Vec::new());
        for d in targets {
            let size = sizes.entry(key(d)).or_default();
            if *size == 0 {
                canary.push(d);
            } else {
                rest.push(d);
            }
            *size += 1;
        }
        let cohorts = canary.len();
        let mut canary_cohorts: Vec<Cohort> = canary
            .iter()
            .map(|d| {
                let k = key(d);
                Cohort {
                    hardware_level: k.as_ref().map(|(l, _)| *l),
                    devices: sizes.get(&k).copied().unwrap_or(1),
                    software_version: k.map(|(_, v)| v),
                    device: d.id.clone(),
                }
            })
            .collect();
        canary_cohorts.sort_by_key(|c| std::cmp::Reverse(c.devices));

        let specs = if spec.waves.is_empty() {
            vec![WaveSpec { size: WaveSize::Percent(100.0), gates: Default::default(), schedule: Default::default() }]
        } else {
            spec.waves.clone()
        };
        let mut ordered: Vec<&Device> = canary;
        ordered.extend(rest);
        let mut waves = Vec::new();
        let mut taken = 0;
        for (i, ws) in specs.iter().enumerate() {
            let mut reach = ws.size.reach(total).max(taken);
            if i == 0 {
                reach = reach.max(cohorts).max(1);
            }
            let gates = spec.gates.with(&ws.gates);
            gates.validate().map_err(|e| EngineError::BadRequest(format!("wave {}: {e}", i + 1)))?;
            if reach > taken {
                waves.push((ordered[taken..reach].to_vec(), gates, spec.schedule.with(&ws.schedule)));
                taken = reach;
            }
        }
        if taken < total {
            waves.push((ordered[taken..].to_vec(), spec.gates.clone(), spec.schedule.clone()));
        }
        // The rule reads a device's hardware level and minimum software version alone: it is decided once
        // for each pair among the targets, not once a device.
        let header = prediction_header(&image);
        let mut decided: BTreeMap<(HardwareLevel, &SoftwareVersion), Expected> = BTreeMap::new();
        let waves = waves
            .into_iter()
            .map(|(devices, gates, schedule)| {
                let mut prediction = Prediction::default();
                for d in &devices {
                    let Some(hello) = d.hello.as_ref() else {
                        prediction.unknown += 1;
                        continue;
                    };
                    let expected = decided
                        .entry((hello.hardware_level, &hello.minimum_software_version))
                        .or_insert_with(|| Expected::of(decide(&header, &profile(hello), spec.override_compat)));
                    prediction.count(expected);
                }
                PlannedWave { devices: devices.iter().map(|d| d.id.clone()).collect(), gates, schedule, prediction }
            })
            .collect();
        Ok(Plan { image, seed, cohorts, canary: canary_cohorts, waves, timing: None })
    }

    /// What the compatibility rule predicts for `image` on a device, from its hello; `None` if the device has
    /// not said hello.
    pub fn predict(&self, image: &Image, device: &DeviceId, override_compat: bool) -> Option<Decision> {
        let hello = self.devices.get(device)?.hello.as_ref()?;
        Some(decide(&prediction_header(image), &profile(hello), override_compat))
    }

    /// When a plan's waves are expected to start and end if it is created and started at `now`: its windows in
    /// each device's zone, its rate, concurrency limits and soaks played forward, each phone taking the median
    /// time of the jobs that succeeded so far (or ten minutes), every gate passing, approvals given at once.
    pub fn forecast(&self, plan: &Plan, timezone: Option<&str>, now: Millis) -> Timing {
        let mut took: Vec<Millis> = self
            .rollouts
            .values()
            .flat_map(|l| l.jobs.values())
            .filter(|j| matches!(j.phase, crate::model::JobPhase::Succeeded { .. }))
            .filter_map(|j| j.updated_at.checked_sub(j.sent_at?))
            .collect();
        let (job, job_basis) = match took.len() {
            0 => (ASSUMED_JOB, "assumed".to_string()),
            n => {
                let mid = n / 2;
                (*took.select_nth_unstable(mid).1, format!("median of {n} finished jobs"))
            }
        };
        let lanes: Vec<Vec<(jiff::tz::TimeZone, usize)>> = plan
            .waves
            .iter()
            .map(|w| {
                if w.schedule.windows.is_empty() && w.schedule.install_windows.is_empty() {
                    return vec![(jiff::tz::TimeZone::UTC, w.devices.len())];
                }
                let mut by_zone: BTreeMap<std::sync::Arc<str>, usize> = BTreeMap::new();
                for d in &w.devices {
                    *by_zone.entry(self.zone_of(d, timezone)).or_default() += 1;
                }
                by_zone.into_iter().map(|(z, n)| (crate::schedule::zone_or_utc(&z), n)).collect()
            })
            .collect();
        let inputs: Vec<crate::schedule::forecast::WaveInput<'_>> = plan
            .waves
            .iter()
            .zip(lanes)
            .map(|(w, lanes)| crate::schedule::forecast::WaveInput {
                lanes,
                schedule: &w.schedule,
                max_concurrent: w.gates.max_concurrent,
                soak: w.gates.soak_secs.saturating_mul(1000),
            })
            .collect();
        Timing {
            from: now,
            job_secs: job / 1000,
            job_basis,
            waves: crate::schedule::forecast::forecast(&inputs, now, job),
        }
    }

    /// Plans a rollout and creates it, with a pending job per device, under the next free id.
    pub(super) fn create_rollout(
        &mut self,
        spec: RolloutSpec,
        seed: u64,
        actor: String,
        now: Millis,
        fx: &mut Effects,
    ) -> Result<Rollout, EngineError> {
        let plan = self.plan(&spec, seed)?;
        let id = self.rollouts.keys().next_back().map_or(RolloutId::FIRST, |n| n.next());
        let rollout = Rollout {
            id,
            image: plan.image.sha256.clone(),
            targets: spec.targets.clone(),
            waves: plan
                .waves
                .iter()
                .map(|w| Wave {
                    devices: w.devices.len(),
                    gates: w.gates.clone(),
                    schedule: w.schedule.clone(),
                    started_at: None,
                    passed_at: None,
                    approved_by: None,
                })
                .collect(),
            seed: plan.seed,
            override_compat: spec.override_compat,
            use_defaults: spec.use_defaults,
            timezone: spec.timezone.clone(),
            state: RolloutState::Created,
            baseline: Baseline::default(),
            created_by: actor.clone(),
            created_at: now,
            started_at: None,
            ended_at: None,
        };
        let mut live = Live::new(rollout.clone());
        fx.put(Record::Rollout(Box::new(rollout.clone())));
        // The members are written a few thousand to a record; each one's job is implied until first commanded.
        let mut order = 0u32;
        for (w, planned) in plan.waves.iter().enumerate() {
            for chunk in planned.devices.chunks(MEMBERS_PER_RECORD) {
                fx.put(Record::Members(Members { rollout: id, wave: w, first: order, devices: chunk.to_vec() }));
                for device in chunk {
                    live.tallies[w].add(Outcome::Pending);
                    live.queues[w].push_back(device.clone(), self.lane_of(&live.rollout, w, device));
                    live.unsent.insert(device.clone(), Place { wave: w as u32, order });
                    live.by_order.push((order, device.clone()));
                    order += 1;
                }
            }
        }
        self.rollouts.insert(id, live);
        let waves: Vec<String> = plan.waves.iter().map(|w| w.devices.len().to_string()).collect();
        let mut text = format!("waves of {} devices, seed {}", waves.join(", "), plan.seed);
        if spec.override_compat {
            text.push_str(&format!("; with override: {}", spec.override_reason.as_deref().unwrap_or("")));
        }
        self.record(now, &actor, "create", Some(id), text, fx);
        Ok(rollout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::{hello, image};
    use crate::engine::Input;
    use crate::model::TargetFilter;

    /// The generator is SplitMix64 exactly (its published reference outputs for seed 0), so a recorded seed
    /// draws the same waves on every build and platform.
    #[test]
    fn the_generator_is_splitmix64() {
        let mut rng = SplitMix64(0);
        let first: Vec<u64> = (0..3).map(|_| rng.next()).collect();
        assert_eq!(first, [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F]);
    }

    fn engine(n: usize) -> Engine {
        let mut e = Engine::new("http://ctl");
        for i in 0..n {
            let (level, version) = [(3, "V3 R1.0.0"), (3, "V3 R2.0.0"), (4, "V3 R1.0.0")][i % 3];
            e.handle(Input::Hello(hello(&format!("d{i:02}"), level, version)), 0).unwrap();
        }
        e.handle(Input::AddImage(image()), 0).unwrap();
        e
    }

    fn spec(seed: Option<u64>) -> RolloutSpec {
        RolloutSpec {
            image: "ababab".into(),
            targets: TargetFilter::default(),
            waves: ["10%", "50%"]
                .iter()
                .map(|s| WaveSpec { size: s.parse().unwrap(), gates: Default::default(), schedule: Default::default() })
                .collect(),
            gates: Gates::default(),
            schedule: Default::default(),
            timezone: None,
            override_compat: false,
            override_reason: None,
            use_defaults: false,
            seed,
        }
    }

    fn members(plan: &Plan) -> Vec<Vec<String>> {
        plan.waves.iter().map(|w| w.devices.iter().map(|d| d.to_string()).collect()).collect()
    }

    /// A seed always draws the same members, in the same order: a golden draw, so a change to the drawing
    /// is a visible diff.
    #[test]
    fn a_seed_draws_the_same_waves_every_time() {
        let e = engine(12);
        let plan = e.plan(&spec(None), 7).unwrap();
        assert_eq!(plan.seed, 7);
        assert_eq!(members(&plan), GOLDEN_SEED_7);
        assert_eq!(e.plan(&spec(None), 7).unwrap(), plan, "the same seed, the same plan");
        assert_eq!(e.plan(&spec(Some(7)), 99).unwrap(), plan, "the spec's seed wins over the one given");
        // The draw depends on the targets and the seed only: not on the order devices said hello in.
        let mut reversed = Engine::new("http://ctl");
        for d in e.devices().collect::<Vec<_>>().into_iter().rev() {
            reversed.handle(Input::Hello(d.hello.clone().unwrap()), 0).unwrap();
        }
        reversed.handle(Input::AddImage(image()), 0).unwrap();
        assert_eq!(reversed.plan(&spec(None), 7).unwrap(), plan);
    }

    /// Seed 7 over `engine(12)`: the canary takes one device of each of the three cohorts.
    const GOLDEN_SEED_7: [&[&str]; 3] =
        [&["d10", "d11", "d09"], &["d05", "d01", "d07"], &["d04", "d08", "d02", "d06", "d00", "d03"]];

    #[test]
    fn other_seeds_draw_other_waves_of_the_same_sizes() {
        let e = engine(12);
        let a = e.plan(&spec(None), 1).unwrap();
        let b = e.plan(&spec(None), 2).unwrap();
        assert_ne!(members(&a), members(&b));
        let sizes = |p: &Plan| p.waves.iter().map(|w| w.devices.len()).collect::<Vec<_>>();
        assert_eq!(sizes(&a), sizes(&b));
        // 10% of 12 is 2 devices, but there are three cohorts: the canary holds one of each.
        assert_eq!((a.cohorts, sizes(&a)), (3, vec![3, 3, 6]));
    }
}
