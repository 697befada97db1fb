//! What the engine asks of the service around it: records to persist, and commands to publish once they are.

use bindwave_proto::wire::{Command, DeviceId};

use crate::model::{AuditEntry, Device, Image, Job, Members, Rollout};

/// A record to persist.
///
/// The rare large ones are boxed, so that a record is the size of a job: a wave of a million jobs is a million
/// records in one batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Device(Box<Device>),
    Image(Image),
    Rollout(Box<Rollout>),
    Job(Job),
    /// Devices of a new rollout, none of them commanded yet: their jobs are implied, not written.
    Members(Members),
    Audit(AuditEntry),
}

/// A command for one device.
pub type Publish = (DeviceId, Command);

/// What the service must do after an input, kept apart by kind: write every record of `persist` durably,
/// and only then send every command of `publish`, and take the measurements of `measure`. Each list is in the
/// order the engine decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// Records to write and flush before anything is published.
    pub persist: Vec<Record>,
    /// Commands to publish once `persist` is durable.
    pub publish: Vec<Publish>,
    /// Analysis queries to measure (against Prometheus), each answered with an `Input::Measured`.
    pub measure: Vec<Measure>,
}

/// An analysis measurement the engine asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measure {
    pub rollout: crate::model::RolloutId,
    pub wave: usize,
    /// The analysis' place among the wave's analyses.
    pub analysis: usize,
    pub query: String,
}

impl Effects {
    /// Nothing to persist and nothing to publish.
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty() && self.publish.is_empty() && self.measure.is_empty()
    }

    /// Appends another input's effects after these (a batch of inputs).
    pub fn extend(&mut self, other: Effects) {
        self.persist.extend(other.persist);
        self.publish.extend(other.publish);
        self.measure.extend(other.measure);
    }

    pub(super) fn put(&mut self, record: Record) {
        self.persist.push(record);
    }

    pub(super) fn send(&mut self, device: DeviceId, command: Command) {
        self.publish.push((device, command));
    }
}
