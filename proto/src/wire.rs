//! The MQTT wire, version 1: topics and JSON messages.
//!
//! Every device has its own topics under `bindwave/v1/devices/{device_id}/`, so a broker ACL can pin each
//! device to its own subtree:
//!
//! | topic            | from       | retained | message                   | QoS |
//! |------------------|------------|----------|---------------------------|-----|
//! | `.../hello`      | device     | yes      | [`Hello`]                 | 1   |
//! | `.../presence`   | device/LWT | yes      | [`Presence`]              | 1   |
//! | `.../commands`   | controller | no       | [`Command`]               | 1   |
//! | `.../reports`    | device     | no       | [`Report`]                | 1   |
//!
//! Brokers drop QoS 1 messages when a client's queue overflows, and the controller, which hears every
//! device, is that client. So final outcomes are acknowledged end to end: a device repeats a final report
//! until the controller answers with [`Command::Ack`] for that job. Progress reports may be lost harmlessly.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::compat::Rejection;
use crate::signature::Untrusted;
use crate::window::InstallWindow;
use crate::{HardwareLevel, KeyId, ProtoError, Signature, SoftwareVersion};

/// The prefix of every topic of this wire version.
pub const TOPIC_PREFIX: &str = "bindwave/v1/devices";
/// The largest message payload either side sends or accepts, in bytes; a larger one is dropped (and counted) by
/// its reader.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;
/// The largest MQTT packet: the embedded broker's limit, the shipped Mosquitto config's `max_packet_size`,
/// and what clients send. Clients read up to [`MAX_PACKET_SIZE`] + 1 KiB, the slack for topic and header, so
/// nothing a broker delivers can be too large for them (which would drop their connection, again and again
/// for a retained message).
pub const MAX_PACKET_SIZE: usize = 256 * 1024;

/// A device's id: 1-64 characters of `A-Z a-z 0-9 . _ -`, so it is safe in a topic and a file name.
///
/// Shared, not copied, by a clone: a controller holding a million devices names each in its inventory, in
/// every rollout it belongs to and in their dispatch queues, and a clone is a count, not an allocation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(Arc<str>);

impl DeviceId {
    pub fn new(id: impl Into<String>) -> Result<Self, ProtoError> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("empty")
        } else if id.len() > 64 {
            Some("longer than 64 characters")
        } else if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            Some("contains a character that is not allowed")
        } else if id == "." || id == ".." {
            Some("'.' and '..' are not ids")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(ProtoError::InvalidDeviceId { input: id, reason }),
            None => Ok(DeviceId(id.into())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for DeviceId {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self, ProtoError> {
        DeviceId::new(s)
    }
}

impl Serialize for DeviceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DeviceId::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The kinds of per-device topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum TopicKind {
    Hello,
    Presence,
    Commands,
    Reports,
}

impl TopicKind {
    /// The topic's last level: `hello`, `presence`, `commands`, `reports`.
    pub fn suffix(self) -> &'static str {
        self.into()
    }

    /// The topic of this kind for one device.
    pub fn topic(self, device: &DeviceId) -> String {
        format!("{TOPIC_PREFIX}/{device}/{}", self.suffix())
    }

    /// The subscription filter matching this kind for every device.
    pub fn filter_all(self) -> String {
        format!("{TOPIC_PREFIX}/+/{}", self.suffix())
    }
}

/// Splits a topic into its device and kind; `None` for a topic that is not ours.
pub fn parse_topic(topic: &str) -> Option<(DeviceId, TopicKind)> {
    let rest = topic.strip_prefix(TOPIC_PREFIX)?.strip_prefix('/')?;
    let (device, suffix) = rest.split_once('/')?;
    let kind = [TopicKind::Hello, TopicKind::Presence, TopicKind::Commands, TopicKind::Reports]
        .into_iter()
        .find(|k| k.suffix() == suffix)?;
    Some((DeviceId::new(device).ok()?, kind))
}

/// Where a device's hardware level came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantArray)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum LevelSource {
    /// Looked up from the part number in the agent's table.
    PartNumber,
    /// Set as a fixed value in the agent's configuration.
    Configured,
    /// Found by a dynamic check on the device.
    Probe,
}

/// Two sources of a phone's hardware level that disagree. The dynamic probe wins; the conflict is reported so
/// an operator can fix the part-number table or the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LevelConflict {
    pub probe: HardwareLevel,
    pub other: HardwareLevel,
    pub other_source: LevelSource,
}

impl LevelSource {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Text a fleet repeats (part numbers, models, agent versions, labels): shared, so that a controller holding a
/// million hellos can keep each distinct text once.
pub type Shared = Arc<str>;

/// A device introduces itself, retained, every time it connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hello {
    pub device_id: DeviceId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub part_number: Shared,
    pub hardware_level: HardwareLevel,
    pub hardware_level_source: LevelSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_level_conflict: Option<LevelConflict>,
    pub software_version: SoftwareVersion,
    pub minimum_software_version: SoftwareVersion,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub agent_version: Shared,
    /// The phone model, e.g. `CP400`, if the agent is configured with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub model: Option<Shared>,
    /// Operator-defined labels (`site=munich`, `pilot`), for targeting rollouts.
    #[serde(default, skip_serializing_if = "no_labels")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub labels: Arc<[Shared]>,
    /// Seconds between the phone's heartbeats (its retained presence, published again). A phone silent for
    /// [`HEARTBEATS_MISSED`] of them is taken as gone, whether or not its last will arrived. `None`: a phone
    /// that sends none (an older agent), whose presence follows its last will alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_secs: Option<u32>,
    /// The phone's time zone, an IANA name (`Europe/Berlin`), if it is configured with one: a rollout's
    /// maintenance windows are in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub timezone: Option<Shared>,
}

/// Heartbeats a phone may miss before it is taken as gone.
pub const HEARTBEATS_MISSED: u64 = 3;

fn no_labels(labels: &[Shared]) -> bool {
    labels.is_empty()
}

/// Whether a device is connected. The device publishes `online: true` retained; its last will publishes
/// `online: false` retained when the broker loses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub online: bool,
}

/// What the controller sends a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::EnumDiscriminants)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum_discriminants(name(CommandKind), derive(strum::IntoStaticStr, strum::VariantArray))]
#[strum_discriminants(strum(serialize_all = "snake_case"))]
pub enum Command {
    Update(UpdateCommand),
    /// The controller has recorded the final report of this job: stop repeating it.
    Ack {
        job_id: String,
    },
    /// Stop this job if it has not switched slots yet: its download and retries end, its partial file is
    /// removed, and it reports `cancelled`. A job past the switch reports its true outcome instead.
    Cancel {
        job_id: String,
    },
}

/// A command as it travels on a device's command topic: the command, until when it may be acted on, and the
/// controller's signature over both and the device id ([`crate::command_signing::signed_message`]).
///
/// Both fields are optional in the JSON so that an unsigned command still reads, and can be refused as
/// `unsigned` (or, in a lab, taken without its override) rather than dropped as malformed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandMessage {
    #[serde(flatten)]
    pub command: Command,
    /// Unix seconds after which the phone refuses the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// `<key id>:<base64>`, by the controller's command key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

impl CommandMessage {
    /// A command with neither expiry nor signature (what older controllers sent).
    pub fn unsigned(command: Command) -> CommandMessage {
        CommandMessage { command, expires_at: None, signature: None }
    }
}

/// Fetch this bind, check it, and install it if it is for you.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateCommand {
    pub job_id: String,
    pub rollout_id: String,
    /// Where to fetch the bind (http:// or https://).
    pub url: String,
    /// Size of the whole bind file, header included.
    pub size: u64,
    /// SHA-256 of the whole bind file, lowercase hex.
    pub sha256: String,
    /// Install even if the compatibility rule says no.
    #[serde(rename = "override")]
    pub override_compat: bool,
    /// `url` is only a file name: fetch it with the phone's default access settings (protocol, server, port,
    /// user, password, path), as the phone's "Use defaults" setting does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_defaults: bool,
    /// How long the controller waits for the outcome, in seconds from the command. The phone gives up its
    /// download then too (or sooner, by its own limit), and reports `timed_out` instead of working on unseen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Install only inside one of these (download and verify at once, then wait, reporting `downloaded`);
    /// none: install as soon as verified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub install_windows: Vec<InstallWindow>,
}

/// The states of a job on a device, in order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum JobState {
    Received,
    Downloading,
    Verifying,
    /// Downloaded and verified; waiting for an install window.
    Downloaded,
    Installing,
    /// Installed; restarting into the new version and checking its health.
    Restarting,
    Succeeded,
    Rejected,
    Failed,
    /// Installed, but the health check failed: the phone switched back to its previous version.
    RolledBack,
    /// Stopped by the controller's cancel before the install switched slots: the phone runs what it ran.
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Rejected | JobState::Failed | JobState::RolledBack | JobState::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a job was rejected or failed: a stable code with the values behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumCount)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "code", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Reason {
    HardwareLevelIncompatible {
        device_level: HardwareLevel,
        bind_levels: Vec<HardwareLevel>,
        /// Where the phone's level came from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        level_source: Option<LevelSource>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        level_conflict: Option<LevelConflict>,
    },
    SoftwareLevelBelowMinimum {
        bind_version: SoftwareVersion,
        minimum: SoftwareVersion,
    },
    ChecksumMismatch {
        expected: String,
        actual: String,
    },
    SizeMismatch {
        expected: u64,
        actual: u64,
    },
    MalformedBind {
        detail: String,
        /// The header field at fault, when one is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
    },
    DownloadFailed {
        detail: String,
        /// The last HTTP status, if the server answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        /// How many times the agent tried.
        #[serde(default = "one")]
        attempts: u32,
    },
    InstallFailed {
        detail: String,
    },
    /// The phone could not keep the download on its own storage (a full or failing disk): neither the bind's
    /// fault nor the server's.
    StorageFailed {
        detail: String,
    },
    /// The new version did not pass its health check after the restart.
    HealthCheckFailed {
        detail: String,
    },
    /// The command itself could not be carried out (a bad URL, for instance).
    InvalidCommand {
        detail: String,
    },
    /// The job ran past its time limit and was abandoned; the phone still runs what it ran.
    TimedOut {
        /// The limit, in seconds from the start of the job.
        limit_secs: u64,
        /// Where the job was when the time ran out.
        during: JobState,
        /// Bytes of the bind downloaded by then.
        #[serde(default)]
        received: u64,
    },
    /// The bind carries no signature, and this phone pins release keys: it installs only signed binds.
    Unsigned,
    /// The bind names a key this phone trusts, but its signature does not verify: the bind was altered after
    /// it was signed (one flipped bit is enough), or the signature is forged.
    SignatureInvalid {
        key_id: KeyId,
    },
    /// The bind is signed by a key this phone does not trust.
    UntrustedKey {
        key_id: KeyId,
    },
    /// Every install window the command carried has passed before the phone could install (it was off, or
    /// its download took past them): nothing was installed.
    InstallWindowsPassed {
        /// When the last of them ended (Unix seconds).
        last_until: u64,
    },
    /// The device reported success, but does not run the image's version: the controller does not count it
    /// as a success.
    VersionMismatch {
        /// The image's version.
        expected: SoftwareVersion,
        /// What the device said it runs, if it said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        running: Option<SoftwareVersion>,
    },
}

impl From<Untrusted> for Reason {
    fn from(u: Untrusted) -> Self {
        match u {
            Untrusted::Unsigned => Reason::Unsigned,
            Untrusted::Invalid(key_id) => Reason::SignatureInvalid { key_id },
            Untrusted::UnknownKey(key_id) => Reason::UntrustedKey { key_id },
        }
    }
}

fn one() -> u32 {
    1
}

impl Reason {
    /// The reason's stable code, as on the wire (`hardware_level_incompatible`, ...).
    pub fn code(&self) -> &'static str {
        self.into()
    }
}

impl From<Rejection> for Reason {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::HardwareLevelIncompatible { device_level, bind_levels } => Reason::HardwareLevelIncompatible {
                device_level,
                bind_levels,
                level_source: None,
                level_conflict: None,
            },
            Rejection::SoftwareLevelBelowMinimum { bind_version, minimum } => {
                Reason::SoftwareLevelBelowMinimum { bind_version, minimum }
            }
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::HardwareLevelIncompatible { device_level, bind_levels, level_source, level_conflict } => {
                Rejection::HardwareLevelIncompatible { device_level: *device_level, bind_levels: bind_levels.clone() }
                    .fmt(f)?;
                if let Some(source) = level_source {
                    write!(f, " (level from the {})", source.as_str())?;
                }
                if let Some(c) = level_conflict {
                    write!(f, "; the probe says {} but the {} says {}", c.probe, c.other_source.as_str(), c.other)?;
                }
                Ok(())
            }
            Reason::SoftwareLevelBelowMinimum { bind_version, minimum } => {
                Rejection::SoftwareLevelBelowMinimum { bind_version: bind_version.clone(), minimum: minimum.clone() }
                    .fmt(f)
            }
            Reason::ChecksumMismatch { expected, actual } => {
                write!(f, "sha-256 mismatch: expected {expected}, got {actual}")
            }
            Reason::SizeMismatch { expected, actual } => {
                write!(f, "size mismatch: expected {expected} bytes, got {actual}")
            }
            Reason::MalformedBind { detail, .. } => write!(f, "malformed bind: {detail}"),
            Reason::DownloadFailed { detail, attempts, .. } => {
                write!(f, "download failed after {attempts} attempt{}: {detail}", if *attempts == 1 { "" } else { "s" })
            }
            Reason::InstallFailed { detail } => write!(f, "install failed: {detail}"),
            Reason::StorageFailed { detail } => write!(f, "cannot store the download: {detail}"),
            Reason::HealthCheckFailed { detail } => write!(f, "health check failed, rolled back: {detail}"),
            Reason::InvalidCommand { detail } => write!(f, "invalid command: {detail}"),
            Reason::TimedOut { limit_secs, during, received } => write!(
                f,
                "timed out after {limit_secs} s while {} ({received} bytes received); abandoned, nothing installed",
                during.as_str()
            ),
            Reason::Unsigned => f.write_str(
                "the bind is not signed, and this phone installs only signed binds; sign it with \
                 `bindwave image sign --key KEY` (nothing was installed)",
            ),
            Reason::SignatureInvalid { key_id } => write!(
                f,
                "the signature by key {key_id} does not verify: the bind was altered after it was signed, or the \
                 signature is forged; get the bind again from its source and sign it again (nothing was installed)"
            ),
            Reason::UntrustedKey { key_id } => write!(
                f,
                "signed by key {key_id}, which this phone does not trust; add its public key to [trust] keys \
                 (nothing was installed)"
            ),
            Reason::InstallWindowsPassed { last_until } => write!(
                f,
                "every install window of the command had passed (the last ended at {last_until}, Unix time) before \
                 the phone could install; nothing was installed, and a new command brings new windows"
            ),
            Reason::VersionMismatch { expected, running: Some(running) } => write!(
                f,
                "version mismatch: the device reported success but runs {running}, not the image's {expected}"
            ),
            Reason::VersionMismatch { expected, running: None } => write!(
                f,
                "version mismatch: the device reported success without naming the version it runs (the image's \
                 is {expected})"
            ),
        }
    }
}

/// A device tells the controller where a job stands. On the wire a report with a reason also carries
/// `message`, the reason in words, for people and log shippers; readers ignore it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Report {
    pub job_id: String,
    pub state: JobState,
    /// Download progress in percent, while downloading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    /// The version the device runs now; set on every final report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_version: Option<SoftwareVersion>,
    /// Set on `rejected` and `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The bind was installed only because Override was set.
    #[serde(default)]
    pub override_used: bool,
    /// What the download took, on final reports of jobs that downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<DownloadStats>,
}

/// What a job's download took, as the phone measured it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DownloadStats {
    /// Bytes received over the network by this run of the agent (a resumed download counts only the rest).
    pub bytes: u64,
    /// Wall time from the first request to the verified file (or to giving up), in milliseconds.
    pub millis: u64,
    /// Requests made, the first included.
    pub attempts: u32,
}

impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            job_id: &'a str,
            state: JobState,
            #[serde(skip_serializing_if = "Option::is_none")]
            progress: Option<u8>,
            #[serde(skip_serializing_if = "Option::is_none")]
            running_version: &'a Option<SoftwareVersion>,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: &'a Option<Reason>,
            #[serde(skip_serializing_if = "Option::is_none")]
            message: Option<String>,
            override_used: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            download: &'a Option<DownloadStats>,
        }
        Out {
            job_id: &self.job_id,
            state: self.state,
            progress: self.progress,
            running_version: &self.running_version,
            reason: &self.reason,
            message: self.reason.as_ref().map(ToString::to_string),
            override_used: self.override_used,
            download: &self.download,
        }
        .serialize(s)
    }
}

macro_rules! json_message {
    ($t:ty, $kind:literal) => {
        impl $t {
            /// Decodes a message, refusing oversized or malformed payloads with a reason.
            pub fn from_json(bytes: &[u8]) -> Result<Self, ProtoError> {
                if bytes.len() > MAX_MESSAGE_LEN {
                    return Err(ProtoError::MalformedMessage {
                        kind: $kind,
                        detail: format!("{} bytes is over the {MAX_MESSAGE_LEN}-byte limit", bytes.len()),
                    });
                }
                serde_json::from_slice(bytes)
                    .map_err(|e| ProtoError::MalformedMessage { kind: $kind, detail: e.to_string() })
            }

            /// Encodes a message. These types have no maps with non-string keys and no foreign `Serialize`
            /// impls, so this does not fail today; if it ever does, the caller hears of it instead of sending
            /// an empty payload.
            pub fn to_json(&self) -> Result<Vec<u8>, ProtoError> {
                serde_json::to_vec(self).map_err(|e| ProtoError::Encode { kind: $kind, detail: e.to_string() })
            }
        }
    };
}

json_message!(Hello, "hello");
json_message!(Presence, "presence");
json_message!(Command, "command");
json_message!(CommandMessage, "command");
json_message!(Report, "report");

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use strum::VariantArray;

    fn id(s: &str) -> DeviceId {
        DeviceId::new(s).unwrap()
    }

    #[test]
    fn topics_round_trip() {
        for kind in [TopicKind::Hello, TopicKind::Presence, TopicKind::Commands, TopicKind::Reports] {
            let t = kind.topic(&id("phone-01"));
            assert_eq!(parse_topic(&t), Some((id("phone-01"), kind)));
        }
        assert_eq!(TopicKind::Reports.topic(&id("a")), "bindwave/v1/devices/a/reports");
        assert_eq!(TopicKind::Reports.filter_all(), "bindwave/v1/devices/+/reports");
        assert_eq!(parse_topic("bindwave/v1/devices/a/other"), None);
        assert_eq!(parse_topic("bindwave/v2/devices/a/hello"), None);
        assert_eq!(parse_topic("bindwave/v1/devices/a b/hello"), None);
        assert_eq!(parse_topic("bindwave/v1/devices/a/hello/x"), None);
    }

    #[test]
    fn device_ids_are_topic_and_path_safe() {
        for bad in ["", "a/b", "+", "#", "a b", "..", ".", &"x".repeat(65), "é"] {
            assert!(DeviceId::new(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<DeviceId>("\"a/b\"").is_err());
    }

    // Golden JSON: a change to any of these is a change to the wire, and must be deliberate.

    #[test]
    fn golden_hello() {
        let hello = Hello {
            device_id: id("phone-0001"),
            part_number: "S30817-S7701-A101".into(),
            hardware_level: HardwareLevel(3),
            hardware_level_source: LevelSource::PartNumber,
            hardware_level_conflict: None,
            software_version: "V3 R3.11.0".parse().unwrap(),
            minimum_software_version: "V3 R1.0.0".parse().unwrap(),
            agent_version: "0.1.0".into(),
            model: Some("CP400".into()),
            labels: ["site=munich".into()].into(),
            heartbeat_secs: Some(300),
            timezone: Some("Europe/Berlin".into()),
        };
        let golden = json!({
            "device_id": "phone-0001",
            "part_number": "S30817-S7701-A101",
            "hardware_level": 3,
            "hardware_level_source": "part_number",
            "software_version": "V3 R3.11.0",
            "minimum_software_version": "V3 R1.0.0",
            "agent_version": "0.1.0",
            "model": "CP400",
            "labels": ["site=munich"],
            "heartbeat_secs": 300,
            "timezone": "Europe/Berlin"
        });
        assert_eq!(serde_json::to_value(&hello).unwrap(), golden);
        assert_eq!(Hello::from_json(golden.to_string().as_bytes()).unwrap(), hello);
        // A hello from an agent without model, labels, heartbeat and time zone still reads.
        let mut older = golden.clone();
        for key in ["model", "labels", "heartbeat_secs", "timezone"] {
            older.as_object_mut().unwrap().remove(key);
        }
        let h = Hello::from_json(older.to_string().as_bytes()).unwrap();
        assert_eq!((h.model, h.labels.len(), h.heartbeat_secs, h.timezone), (None, 0, None, None));
    }

    #[test]
    fn golden_commands() {
        let update = Command::Update(UpdateCommand {
            job_id: "r1-phone-0001".into(),
            rollout_id: "r1".into(),
            url: "http://127.0.0.1:8080/binds/ab12.bind".into(),
            size: 1024,
            sha256: "ab12".into(),
            override_compat: false,
            use_defaults: false,
            timeout_secs: None,
            install_windows: vec![],
        });
        let golden = json!({
            "type": "update",
            "job_id": "r1-phone-0001",
            "rollout_id": "r1",
            "url": "http://127.0.0.1:8080/binds/ab12.bind",
            "size": 1024,
            "sha256": "ab12",
            "override": false
        });
        assert_eq!(serde_json::to_value(&update).unwrap(), golden);
        assert_eq!(Command::from_json(golden.to_string().as_bytes()).unwrap(), update);
        let by_name = Command::from_json(br#"{"type":"update","job_id":"j","rollout_id":"r","url":"fw.bind","size":1,"sha256":"00","override":false,"use_defaults":true}"#).unwrap();
        assert!(matches!(by_name, Command::Update(UpdateCommand { use_defaults: true, timeout_secs: None, .. })));
        let limited = Command::from_json(br#"{"type":"update","job_id":"j","rollout_id":"r","url":"u","size":1,"sha256":"00","override":false,"timeout_secs":1800}"#).unwrap();
        assert!(matches!(limited, Command::Update(UpdateCommand { timeout_secs: Some(1800), .. })));
        let ack = Command::Ack { job_id: "r1-phone-0001".into() };
        assert_eq!(serde_json::to_value(&ack).unwrap(), json!({"type": "ack", "job_id": "r1-phone-0001"}));
        let cancel = Command::Cancel { job_id: "r1-phone-0001".into() };
        assert_eq!(serde_json::to_value(&cancel).unwrap(), json!({"type": "cancel", "job_id": "r1-phone-0001"}));
        let staged = Command::from_json(br#"{"type":"update","job_id":"j","rollout_id":"r","url":"u","size":1,"sha256":"00","override":false,"install_windows":[{"from":100,"until":200}]}"#).unwrap();
        let Command::Update(staged) = staged else { panic!("{staged:?}") };
        assert_eq!(staged.install_windows, [InstallWindow { from: 100, until: 200 }]);
    }

    /// A signed command on the wire: the command's fields, its expiry and the signature beside them. The
    /// signature is Ed25519's (deterministic) over `command_signing::signed_message` by a fixed test key.
    #[test]
    fn golden_signed_command() {
        use ring::signature::{Ed25519KeyPair, KeyPair as _};
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
        let key_id = crate::PublicKey(pair.public_key().as_ref().try_into().unwrap()).key_id();
        let command = Command::Update(UpdateCommand {
            job_id: "r1-phone-0001".into(),
            rollout_id: "r1".into(),
            url: "http://127.0.0.1:8080/binds/ab12.bind".into(),
            size: 1024,
            sha256: "ab12".into(),
            override_compat: false,
            use_defaults: false,
            timeout_secs: Some(1800),
            install_windows: vec![],
        });
        let expires_at = 1_800_000_000;
        let message = crate::command_signing::signed_message(&id("phone-0001"), &command, expires_at);
        let bytes = pair.sign(&message).as_ref().try_into().unwrap();
        let signed =
            CommandMessage { command, expires_at: Some(expires_at), signature: Some(Signature { key_id, bytes }) };
        let golden = json!({
            "type": "update",
            "job_id": "r1-phone-0001",
            "rollout_id": "r1",
            "url": "http://127.0.0.1:8080/binds/ab12.bind",
            "size": 1024,
            "sha256": "ab12",
            "override": false,
            "timeout_secs": 1800,
            "expires_at": 1800000000u64,
            "signature": GOLDEN_SIGNATURE,
        });
        assert_eq!(serde_json::to_value(&signed).unwrap(), golden);
        assert_eq!(CommandMessage::from_json(golden.to_string().as_bytes()).unwrap(), signed);

        let ack = CommandMessage { command: Command::Ack { job_id: "j".into() }, expires_at: Some(5), signature: None };
        let json = json!({"type": "ack", "job_id": "j", "expires_at": 5});
        assert_eq!(serde_json::to_value(&ack).unwrap(), json);
        assert_eq!(CommandMessage::from_json(json.to_string().as_bytes()).unwrap(), ack);

        // An old-style command, unsigned, still reads, so that it can be refused by name.
        let old = CommandMessage::from_json(
            br#"{"type":"update","job_id":"j","rollout_id":"r","url":"u","size":1,"sha256":"00","override":true}"#,
        )
        .unwrap();
        assert_eq!((old.expires_at, old.signature), (None, None));
        assert!(matches!(old.command, Command::Update(UpdateCommand { override_compat: true, .. })));
        // A signature that is not one is a malformed command.
        let bad = CommandMessage::from_json(br#"{"type":"ack","job_id":"j","signature":"nope"}"#).unwrap_err();
        assert!(bad.to_string().starts_with("malformed command message"), "{bad}");
    }

    const GOLDEN_SIGNATURE: &str =
        "fe812c12f3ab4ce6:6nJxe2eLwaBVnHWZLp/DtbwT819JsA10JwnRGUBJmzjYimYPybPjGYt66XJsLn2ouil5v3QMTN46pwknZlk1Ag==";

    #[test]
    fn golden_reports() {
        let progress = Report {
            job_id: "j".into(),
            state: JobState::Downloading,
            progress: Some(40),
            running_version: None,
            reason: None,
            override_used: false,
            download: None,
        };
        assert_eq!(
            serde_json::to_value(&progress).unwrap(),
            json!({"job_id": "j", "state": "downloading", "progress": 40, "override_used": false})
        );

        let rejected = Report {
            job_id: "j".into(),
            state: JobState::Rejected,
            progress: None,
            running_version: Some("V3 R3.11.0".parse().unwrap()),
            reason: Some(Reason::SoftwareLevelBelowMinimum {
                bind_version: "V3 R2.0.0".parse().unwrap(),
                minimum: "V3 R3.0.0".parse().unwrap(),
            }),
            override_used: false,
            download: None,
        };
        let golden = json!({
            "job_id": "j",
            "state": "rejected",
            "running_version": "V3 R3.11.0",
            "reason": {"code": "software_level_below_minimum", "bind_version": "V3 R2.0.0", "minimum": "V3 R3.0.0"},
            "message": "bind software V3 R2.0.0 is below this phone's minimum supported V3 R3.0.0",
            "override_used": false
        });
        assert_eq!(serde_json::to_value(&rejected).unwrap(), golden);
        assert_eq!(Report::from_json(golden.to_string().as_bytes()).unwrap(), rejected);

        let timed_out = Report {
            job_id: "j".into(),
            state: JobState::Failed,
            progress: None,
            running_version: Some("V3 R3.11.0".parse().unwrap()),
            reason: Some(Reason::TimedOut { limit_secs: 1800, during: JobState::Downloading, received: 4096 }),
            override_used: false,
            download: Some(DownloadStats { bytes: 4096, millis: 1_800_000, attempts: 3 }),
        };
        let golden = json!({
            "job_id": "j",
            "state": "failed",
            "running_version": "V3 R3.11.0",
            "reason": {"code": "timed_out", "limit_secs": 1800, "during": "downloading", "received": 4096},
            "message": "timed out after 1800 s while downloading (4096 bytes received); abandoned, nothing installed",
            "override_used": false,
            "download": {"bytes": 4096, "millis": 1800000, "attempts": 3}
        });
        assert_eq!(serde_json::to_value(&timed_out).unwrap(), golden);
        assert_eq!(Report::from_json(golden.to_string().as_bytes()).unwrap(), timed_out);

        let storage = Report {
            job_id: "j".into(),
            state: JobState::Failed,
            progress: None,
            running_version: Some("V3 R3.11.0".parse().unwrap()),
            reason: Some(Reason::StorageFailed {
                detail: "write /var/lib/bindwave/downloads/j.bind: No space left on device".into(),
            }),
            override_used: false,
            download: None,
        };
        let golden = json!({
            "job_id": "j",
            "state": "failed",
            "running_version": "V3 R3.11.0",
            "reason": {"code": "storage_failed", "detail": "write /var/lib/bindwave/downloads/j.bind: No space left on device"},
            "message": "cannot store the download: write /var/lib/bindwave/downloads/j.bind: No space left on device",
            "override_used": false
        });
        assert_eq!(serde_json::to_value(&storage).unwrap(), golden);
        assert_eq!(Report::from_json(golden.to_string().as_bytes()).unwrap(), storage);
    }

    /// The names that label metrics and logs are the wire's names: both come from the variant names, by
    /// serde's and strum's `snake_case`, and this holds them together.
    #[test]
    fn enum_names_are_the_wire_names() {
        fn wire(value: impl Serialize) -> String {
            serde_json::to_value(value).unwrap().as_str().unwrap().to_string()
        }
        for s in JobState::VARIANTS {
            assert_eq!(s.as_str(), wire(s));
        }
        for s in LevelSource::VARIANTS {
            assert_eq!(s.as_str(), wire(s));
        }
        for kind in TopicKind::VARIANTS {
            assert!(kind.topic(&id("a")).ends_with(&format!("/{}", kind.suffix())));
        }
        let ack = Command::Ack { job_id: "j".into() };
        let kind: &'static str = CommandKind::from(&ack).into();
        assert_eq!(kind, serde_json::to_value(&ack).unwrap()["type"]);
        let cancel = Command::Cancel { job_id: "j".into() };
        let kind: &'static str = CommandKind::from(&cancel).into();
        assert_eq!(kind, serde_json::to_value(&cancel).unwrap()["type"]);
        assert_eq!(CommandKind::VARIANTS.len(), 3, "a command is missing here");
        let (v, level) = ("V3 R1.0.0".parse::<SoftwareVersion>().unwrap(), HardwareLevel(3));
        let detail = String::from("d");
        let every = [
            Reason::HardwareLevelIncompatible {
                device_level: level,
                bind_levels: vec![],
                level_source: None,
                level_conflict: None,
            },
            Reason::SoftwareLevelBelowMinimum { bind_version: v.clone(), minimum: v },
            Reason::ChecksumMismatch { expected: detail.clone(), actual: detail.clone() },
            Reason::SizeMismatch { expected: 1, actual: 2 },
            Reason::MalformedBind { detail: detail.clone(), field: None },
            Reason::DownloadFailed { detail: detail.clone(), status: None, attempts: 1 },
            Reason::InstallFailed { detail: detail.clone() },
            Reason::StorageFailed { detail: detail.clone() },
            Reason::HealthCheckFailed { detail: detail.clone() },
            Reason::InvalidCommand { detail },
            Reason::TimedOut { limit_secs: 1, during: JobState::Downloading, received: 0 },
            Reason::Unsigned,
            Reason::SignatureInvalid { key_id: KeyId([1; 8]) },
            Reason::UntrustedKey { key_id: KeyId([2; 8]) },
            Reason::InstallWindowsPassed { last_until: 9 },
            Reason::VersionMismatch { expected: "V3 R2.0.0".parse().unwrap(), running: None },
        ];
        let codes: std::collections::BTreeSet<&str> = every.iter().map(Reason::code).collect();
        assert_eq!(codes.len(), <Reason as strum::EnumCount>::COUNT, "a reason is missing here");
        for r in &every {
            assert_eq!(r.code(), serde_json::to_value(r).unwrap()["code"], "{r:?}");
        }
    }

    /// The refusals of a phone that pins release keys: their JSON, and words that say what to do.
    #[test]
    fn signature_refusals_are_golden_and_say_what_to_do() {
        let key_id = KeyId([0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f, 0x70, 0x81]);
        let cases = [
            (Reason::Unsigned, json!({"code": "unsigned"}), "bindwave image sign"),
            (
                Reason::SignatureInvalid { key_id },
                json!({"code": "signature_invalid", "key_id": "1a2b3c4d5e6f7081"}),
                "altered",
            ),
            (
                Reason::UntrustedKey { key_id },
                json!({"code": "untrusted_key", "key_id": "1a2b3c4d5e6f7081"}),
                "signed by key 1a2b3c4d5e6f7081, which this phone does not trust; add its public key to [trust] keys",
            ),
        ];
        for (reason, golden, words) in cases {
            assert_eq!(serde_json::to_value(&reason).unwrap(), golden);
            assert_eq!(serde_json::from_value::<Reason>(golden).unwrap(), reason);
            assert!(reason.to_string().contains(words), "{reason}");
        }
        assert_eq!(Reason::from(Untrusted::Unsigned), Reason::Unsigned);
        assert_eq!(Reason::from(Untrusted::Invalid(key_id)), Reason::SignatureInvalid { key_id });
        assert_eq!(Reason::from(Untrusted::UnknownKey(key_id)), Reason::UntrustedKey { key_id });
    }

    #[test]
    fn garbage_is_a_clear_error() {
        for garbage in
            [&b"not json"[..], b"{}", b"{\"job_id\": 1}", b"\xff\xfe", b"{\"job_id\":\"j\",\"state\":\"exploded\"}"]
        {
            let e = Report::from_json(garbage).unwrap_err();
            assert!(e.to_string().starts_with("malformed report message"), "{e}");
        }
        let big = vec![b' '; MAX_MESSAGE_LEN + 1];
        assert!(Hello::from_json(&big).unwrap_err().to_string().contains("limit"));
        assert!(Command::from_json(br#"{"type":"reboot"}"#).is_err());
    }
}
