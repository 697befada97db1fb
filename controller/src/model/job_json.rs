//! A [`Job`]'s JSON, in the store and the API: its fields, with its [`JobId`](super::JobId) first as `id`.
//! The id is derived from the rollout, the device and the attempt, so it is written from them and checked
//! against them when read.

use bindwave_proto::wire::DeviceId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Job, JobPhase, Millis, RolloutId};

/// A job as its JSON has it.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
struct JobJson<Id, D, P> {
    id: Id,
    rollout: RolloutId,
    device: D,
    wave: usize,
    order: u32,
    attempt: u32,
    phase: P,
    sent_at: Option<Millis>,
    updated_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deadline: Option<Millis>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    cancelling: bool,
}

/// The API's schema of a job: its JSON's, with the typed ids.
type JobSchema = JobJson<super::JobId, DeviceId, JobPhase>;

impl utoipa::PartialSchema for Job {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <JobSchema as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Job {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        use utoipa::{PartialSchema, ToSchema};
        <JobSchema as ToSchema>::schemas(schemas);
        // The generic fields' own schemas, which the derive leaves to the user of a generic type.
        schemas.push((super::JobId::name().into(), super::JobId::schema()));
        schemas.push((DeviceId::name().into(), DeviceId::schema()));
        schemas.push((JobPhase::name().into(), JobPhase::schema()));
        JobPhase::schemas(schemas);
    }
}

impl Serialize for Job {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        JobJson {
            id: self.id(),
            rollout: self.rollout,
            device: &self.device,
            wave: self.wave,
            order: self.order,
            attempt: self.attempt,
            phase: &self.phase,
            sent_at: self.sent_at,
            updated_at: self.updated_at,
            deadline: self.deadline,
            cancelling: self.cancelling,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Job {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = JobJson::<String, DeviceId, JobPhase>::deserialize(d)?;
        let job = Job {
            rollout: j.rollout,
            device: j.device,
            wave: j.wave,
            order: j.order,
            attempt: j.attempt,
            phase: j.phase,
            sent_at: j.sent_at,
            updated_at: j.updated_at,
            deadline: j.deadline,
            cancelling: j.cancelling,
        };
        let id = job.id().to_string();
        if j.id != id {
            let why = format!("job id {:?} is not {id}, the id of its rollout, device and attempt", j.id);
            return Err(serde::de::Error::custom(why));
        }
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden JSON of a job: its typed ids read and write the strings they always were.
    #[test]
    fn job_json() {
        let job = Job {
            rollout: RolloutId::from(12),
            device: DeviceId::new("phone-1").unwrap(),
            wave: 1,
            order: 7,
            attempt: 2,
            phase: JobPhase::Sent,
            sent_at: Some(5),
            updated_at: 6,
            deadline: None,
            cancelling: false,
        };
        let golden = r#"{"id":"r12-phone-1.2","rollout":"r12","device":"phone-1","wave":1,"order":7,"attempt":2,"phase":{"phase":"sent"},"sent_at":5,"updated_at":6}"#;
        assert_eq!(serde_json::to_string(&job).unwrap(), golden);
        assert_eq!(serde_json::from_str::<Job>(golden).unwrap(), job);
        assert_eq!(job.id().to_string(), "r12-phone-1.2");
        let wrong = golden.replace("r12-phone-1.2", "r12-phone-1.3");
        assert!(serde_json::from_str::<Job>(&wrong).unwrap_err().to_string().contains("r12-phone-1.2"));
    }
}
