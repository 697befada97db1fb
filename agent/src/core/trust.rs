//! Which commands the phone acts on: only those its controller signed, for this phone, not expired. Pure: the
//! driver hands it each command message with the time, and carries out the verdict.
//!
//! Through a broker that lets anyone publish, anyone can write to this phone's command topic. So a command is
//! taken only if its signature verifies under a pinned controller key over the command, this phone's own
//! device id and the expiry ([`bindwave_proto::command_signing`]). A command for another phone fails to
//! verify here (the device id is part of what is signed), and counts as `signature_invalid`. A replay of a
//! command already carried out is the journal's to answer: it repeats the recorded outcome, it does not install
//! again.
//!
//! In a lab (`[trust] insecure_lab = true`) a command that is unsigned, or signed by a key the phone does not pin,
//! is taken too (one signed by a pinned key must still verify), but
//! never with its override: the override bypasses the compatibility rule and is honoured only when signed.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bindwave_proto::command_signing::signed_message;
use bindwave_proto::wire::{Command, CommandMessage, DeviceId};
use bindwave_proto::{TrustedKeys, Untrusted};
use serde::{Deserialize, Serialize};

/// How far the phone's clock may be behind the controller's before a fresh command looks expired, or ahead
/// before a command counts as expired early. Phones set their clocks by NTP; five minutes covers a phone that
/// has not synchronized for a while, and is small beside a command's life (the job's time limit, or the
/// controller's `command_ttl`, 24 h by default), so it barely lengthens the window of a replay.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// How often a refusal of one kind is logged while they keep coming: the first at once, then one line a
/// minute with how many there were since.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// Why a command was not acted on.
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
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Refusal {
    /// Not a command message at all (not JSON, or not a command).
    Malformed,
    /// No signature.
    Unsigned,
    /// Signed by a key this phone does not pin.
    UntrustedKey,
    /// Signed under a pinned key id, but it does not verify: altered, forged, or meant for another phone.
    SignatureInvalid,
    /// Signed and valid, but past its expiry.
    Expired,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A command the phone acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trusted {
    pub command: Command,
    /// It verified under a pinned controller key (else it was taken in a lab, without its override).
    pub verified: bool,
}

/// The phone's rule for commands: its pinned controller keys, its own id, and whether it is in a lab.
#[derive(Debug, Clone)]
pub struct CommandTrust {
    keys: TrustedKeys,
    device: DeviceId,
    insecure_lab: bool,
}

impl CommandTrust {
    pub fn new(keys: TrustedKeys, device: DeviceId, insecure_lab: bool) -> CommandTrust {
        CommandTrust { keys, device, insecure_lab }
    }

    /// The pinned controller keys.
    pub fn keys(&self) -> &TrustedKeys {
        &self.keys
    }

    /// Whether `message`, arriving at `now`, is to be acted on.
    pub fn judge(&self, message: CommandMessage, now: SystemTime) -> Result<Trusted, Refusal> {
        let CommandMessage { command, expires_at, signature } = message;
        // A signature made with an expiry covers it; a message without one cannot verify (0 is the past).
        let expires_at = expires_at.unwrap_or(0);
        let signed = signed_message(&self.device, &command, expires_at);
        match self.keys.verify(&signed, signature.as_ref()) {
            Ok(_) => {
                let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
                if now.saturating_sub(CLOCK_SKEW).as_secs() > expires_at {
                    return Err(Refusal::Expired);
                }
                Ok(Trusted { command, verified: true })
            }
            // A lab takes what is not signed, or signed by a key it does not pin (a lab phone may pin none);
            // a signature by a pinned key that does not verify is refused even there.
            Err(why @ (Untrusted::Unsigned | Untrusted::UnknownKey(_))) if self.insecure_lab => {
                let mut command = command;
                if let Command::Update(u) = &mut command {
                    if u.override_compat {
                        tracing::warn!(job = %u.job_id, "lab mode: a command that is {why} asks for override; \
                            override is honoured only in a signed command, so it is ignored");
                        u.override_compat = false;
                    }
                }
                Ok(Trusted { command, verified: false })
            }
            Err(Untrusted::Unsigned) => Err(Refusal::Unsigned),
            Err(Untrusted::UnknownKey(_)) => Err(Refusal::UntrustedKey),
            Err(Untrusted::Invalid(_)) => Err(Refusal::SignatureInvalid),
        }
    }
}

/// Counts of refused commands, by reason, since the agent started: what `status.json` shows.
pub type RefusedCounts = BTreeMap<Refusal, u64>;

/// Counts refusals, and says when one is worth a log line: a stream of forged commands is one line a minute per
/// reason, not one per command.
#[derive(Debug, Clone, Default)]
pub struct Refusals {
    counts: RefusedCounts,
    /// Per reason: when it was last logged, and how many came since.
    logged: BTreeMap<Refusal, (SystemTime, u64)>,
}

impl Refusals {
    /// Counts a refusal at `now`. `Some(n)` when it is to be logged now, `n` being the refusals of that
    /// reason since the last line (this one included).
    pub fn note(&mut self, why: Refusal, now: SystemTime) -> Option<u64> {
        *self.counts.entry(why).or_default() += 1;
        match self.logged.get_mut(&why) {
            Some((at, since)) if now.duration_since(*at).unwrap_or_default() < LOG_EVERY => {
                *since += 1;
                None
            }
            Some((at, since)) => {
                let n = *since + 1;
                (*at, *since) = (now, 0);
                Some(n)
            }
            None => {
                self.logged.insert(why, (now, 0));
                Some(1)
            }
        }
    }

    pub fn counts(&self) -> &RefusedCounts {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use bindwave_proto::wire::UpdateCommand;
    use bindwave_proto::{PublicKey, Signature};
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn pair(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
    }

    fn public(seed: u8) -> PublicKey {
        PublicKey(pair(seed).public_key().as_ref().try_into().unwrap())
    }

    fn device(s: &str) -> DeviceId {
        DeviceId::new(s).unwrap()
    }

    fn update(override_compat: bool) -> Command {
        Command::Update(UpdateCommand {
            job_id: "r1-phone-1".into(),
            rollout_id: "r1".into(),
            url: "https://bindwave.example/binds/ab.bind".into(),
            size: 1024,
            sha256: "ab".repeat(32),
            override_compat,
            use_defaults: false,
            timeout_secs: Some(600),
            install_windows: vec![],
        })
    }

    fn signed(seed: u8, to: &str, command: Command, expires_at: u64) -> CommandMessage {
        let bytes = pair(seed).sign(&signed_message(&device(to), &command, expires_at)).as_ref().try_into().unwrap();
        let signature = Signature { key_id: public(seed).key_id(), bytes };
        CommandMessage { command, expires_at: Some(expires_at), signature: Some(signature) }
    }

    fn phone(insecure_lab: bool) -> CommandTrust {
        CommandTrust::new(TrustedKeys::new([public(1)]), device("phone-1"), insecure_lab)
    }

    #[test]
    fn a_command_signed_by_the_pinned_key_for_this_phone_is_taken_with_its_override() {
        let t = phone(false).judge(signed(1, "phone-1", update(true), NOW + 600), at(NOW)).unwrap();
        assert!(t.verified);
        assert_eq!(t.command, update(true));
        let ack = Command::Ack { job_id: "r1-phone-1".into() };
        assert_eq!(phone(false).judge(signed(1, "phone-1", ack.clone(), NOW + 1), at(NOW)).unwrap().command, ack);
    }

    #[test]
    fn forged_foreign_unsigned_and_expired_commands_are_refused_by_reason() {
        let p = phone(false);
        let unsigned = CommandMessage::unsigned(update(true));
        assert_eq!(p.judge(unsigned, at(NOW)), Err(Refusal::Unsigned));
        assert_eq!(p.judge(signed(2, "phone-1", update(true), NOW + 600), at(NOW)), Err(Refusal::UntrustedKey));
        // Meant for another phone: the device id is signed.
        assert_eq!(p.judge(signed(1, "phone-2", update(false), NOW + 600), at(NOW)), Err(Refusal::SignatureInvalid));
        // Altered on the way: any field.
        let mut altered = signed(1, "phone-1", update(false), NOW + 600);
        if let Command::Update(u) = &mut altered.command {
            u.url = "http://evil.example/fw.bind".into();
        }
        assert_eq!(p.judge(altered, at(NOW)), Err(Refusal::SignatureInvalid));
        let mut extended = signed(1, "phone-1", update(false), NOW + 600);
        extended.expires_at = Some(NOW + 60_000);
        assert_eq!(p.judge(extended, at(NOW)), Err(Refusal::SignatureInvalid));
        let mut no_expiry = signed(1, "phone-1", update(false), NOW + 600);
        no_expiry.expires_at = None;
        assert_eq!(p.judge(no_expiry, at(NOW)), Err(Refusal::SignatureInvalid));
        // Expired, past the clock skew allowance; within it, still taken.
        let skew = CLOCK_SKEW.as_secs();
        assert_eq!(p.judge(signed(1, "phone-1", update(false), NOW - skew - 1), at(NOW)), Err(Refusal::Expired));
        assert!(p.judge(signed(1, "phone-1", update(false), NOW - skew + 1), at(NOW)).is_ok());
    }

    #[test]
    fn a_lab_takes_unsigned_and_unknown_keys_but_never_their_override() {
        let lab = phone(true);
        for message in [CommandMessage::unsigned(update(true)), signed(2, "phone-1", update(true), NOW + 600)] {
            let t = lab.judge(message, at(NOW)).unwrap();
            assert_eq!((t.verified, t.command), (false, update(false)));
        }
        // A signature by a pinned key that does not verify (here: made for another phone) is refused even so.
        assert_eq!(lab.judge(signed(1, "phone-2", update(true), NOW + 600), at(NOW)), Err(Refusal::SignatureInvalid));
        // Signed and verified: the override stands, and an expired one is still refused.
        assert_eq!(lab.judge(signed(1, "phone-1", update(true), NOW + 600), at(NOW)).unwrap().command, update(true));
        assert_eq!(lab.judge(signed(1, "phone-1", update(true), NOW - 3600), at(NOW)), Err(Refusal::Expired));
    }

    #[test]
    fn refusals_are_counted_each_and_logged_once_a_minute_per_reason() {
        let mut r = Refusals::default();
        assert_eq!(r.note(Refusal::Unsigned, at(NOW)), Some(1));
        for s in 1..=10 {
            assert_eq!(r.note(Refusal::Unsigned, at(NOW + s)), None);
        }
        // Another reason has its own line.
        assert_eq!(r.note(Refusal::Expired, at(NOW + 5)), Some(1));
        // A minute on: one line for the eleven since.
        assert_eq!(r.note(Refusal::Unsigned, at(NOW + 60)), Some(11));
        assert_eq!(r.note(Refusal::Unsigned, at(NOW + 61)), None);
        assert_eq!(r.counts()[&Refusal::Unsigned], 13);
        assert_eq!(r.counts()[&Refusal::Expired], 1);
        let json = serde_json::to_value(r.counts()).unwrap();
        assert_eq!(json, serde_json::json!({"unsigned": 13, "expired": 1}));
        for why in <Refusal as strum::VariantArray>::VARIANTS {
            assert_eq!(serde_json::to_value(why).unwrap(), why.as_str());
        }
    }
}
