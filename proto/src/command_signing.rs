//! What the controller signs in a command, so that a phone acts only on what its own controller sent it.
//!
//! The signed message is the context string [`CONTEXT`] followed by the command's fields in a fixed order,
//! each field written so that no two different commands give the same bytes:
//!
//! ```text
//!  "bindwave command v1\0"
//!  text   device id        (from the topic: not in the JSON, but signed, so a command for A fails on B)
//!  text   command type     ("update" | "ack" | "cancel")
//!  text   job id
//!  update only:
//!    text   rollout id
//!    text   url
//!    text   sha256
//!    u64    size
//!    u8     override        (0 | 1)
//!    u8     use_defaults    (0 | 1)
//!    opt    timeout_secs    (0, or 1 and the u64)
//!    only if it has install windows:
//!      u32    count, then each window's from and until (u64 each)
//!  u64    expires_at       (unix seconds)
//!
//!  text = u32 length (big endian) + UTF-8 bytes;  u64 = 8 bytes big endian;  opt = u8 tag [+ u64]
//! ```
//!
//! The command type comes before the fields that depend on it, so an ack can never read as an update. The
//! install windows are written only when there are some: a command without them signs the same bytes as
//! before they existed, and one with them is longer, so the two never meet; an agent that predates windows
//! refuses a command that has them (its signature does not verify there) rather than install outside them.

use crate::wire::{Command, CommandKind, DeviceId, UpdateCommand};

/// The first bytes of every signed command: a signature made for anything else (a bind header) never
/// verifies as a command.
pub const CONTEXT: &[u8] = b"bindwave command v1\0";

/// The bytes the controller signs for `command` to `device`, valid until `expires_at` (unix seconds).
pub fn signed_message(device: &DeviceId, command: &Command, expires_at: u64) -> Vec<u8> {
    let mut out = CONTEXT.to_vec();
    text(&mut out, device.as_str());
    let kind: &'static str = CommandKind::from(command).into();
    text(&mut out, kind);
    match command {
        Command::Update(UpdateCommand {
            job_id,
            rollout_id,
            url,
            size,
            sha256,
            override_compat,
            use_defaults,
            timeout_secs,
            install_windows,
        }) => {
            text(&mut out, job_id);
            text(&mut out, rollout_id);
            text(&mut out, url);
            text(&mut out, sha256);
            out.extend_from_slice(&size.to_be_bytes());
            out.push(u8::from(*override_compat));
            out.push(u8::from(*use_defaults));
            match timeout_secs {
                None => out.push(0),
                Some(t) => {
                    out.push(1);
                    out.extend_from_slice(&t.to_be_bytes());
                }
            }
            if !install_windows.is_empty() {
                // Bounded by the message size limit, far below 4 billion windows.
                let count = u32::try_from(install_windows.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&count.to_be_bytes());
                for w in install_windows {
                    out.extend_from_slice(&w.from.to_be_bytes());
                    out.extend_from_slice(&w.until.to_be_bytes());
                }
            }
        }
        Command::Ack { job_id } | Command::Cancel { job_id } => text(&mut out, job_id),
    }
    out.extend_from_slice(&expires_at.to_be_bytes());
    out
}

fn text(out: &mut Vec<u8>, s: &str) {
    // Every text here is bounded by the message size limit, far below 4 GiB.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    use super::*;
    use crate::window::InstallWindow;
    use crate::{PublicKey, Signature, TrustedKeys, Untrusted};

    fn key() -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap()
    }

    fn sign(device: &DeviceId, command: &Command, expires_at: u64) -> Signature {
        let pair = key();
        let public = PublicKey(pair.public_key().as_ref().try_into().unwrap());
        let bytes = pair.sign(&signed_message(device, command, expires_at)).as_ref().try_into().unwrap();
        Signature { key_id: public.key_id(), bytes }
    }

    fn trusted() -> TrustedKeys {
        TrustedKeys::new([PublicKey(key().public_key().as_ref().try_into().unwrap())])
    }

    fn update() -> UpdateCommand {
        UpdateCommand {
            job_id: "r1-phone-1".into(),
            rollout_id: "r1".into(),
            url: "https://bindwave.example/binds/ab.bind".into(),
            size: 1024,
            sha256: "ab".repeat(32),
            override_compat: false,
            use_defaults: false,
            timeout_secs: Some(1800),
            install_windows: vec![InstallWindow { from: 1_800_000_000, until: 1_800_003_600 }],
        }
    }

    fn device(s: &str) -> DeviceId {
        DeviceId::new(s).unwrap()
    }

    /// Every field is covered: changing any one of them (or the device, or the expiry) breaks the signature.
    #[test]
    fn any_changed_field_breaks_the_signature() {
        let (d, cmd, exp) = (device("phone-1"), Command::Update(update()), 1_800_000_000);
        let sig = sign(&d, &cmd, exp);
        let keys = trusted();
        assert!(keys.verify(&signed_message(&d, &cmd, exp), Some(&sig)).is_ok());
        type Change = Box<dyn Fn(&mut UpdateCommand)>;
        let changes: Vec<(&str, Change)> = vec![
            ("job_id", Box::new(|u| u.job_id.push('x'))),
            ("rollout_id", Box::new(|u| u.rollout_id = "r2".into())),
            ("url", Box::new(|u| u.url = "http://evil.example/x.bind".into())),
            ("sha256", Box::new(|u| u.sha256 = "cd".repeat(32))),
            ("size", Box::new(|u| u.size += 1)),
            ("override", Box::new(|u| u.override_compat = true)),
            ("use_defaults", Box::new(|u| u.use_defaults = true)),
            ("timeout_secs", Box::new(|u| u.timeout_secs = None)),
            ("timeout_secs value", Box::new(|u| u.timeout_secs = Some(1801))),
            ("install_windows", Box::new(|u| u.install_windows.clear())),
            ("install window from", Box::new(|u| u.install_windows[0].from -= 1)),
            ("install window until", Box::new(|u| u.install_windows[0].until += 1)),
            ("another install window", Box::new(|u| u.install_windows.push(u.install_windows[0]))),
        ];
        for (name, change) in changes {
            let mut u = update();
            change(&mut u);
            let message = signed_message(&d, &Command::Update(u), exp);
            assert!(matches!(keys.verify(&message, Some(&sig)), Err(Untrusted::Invalid(_))), "{name}");
        }
        let other_device = signed_message(&device("phone-2"), &cmd, exp);
        assert!(matches!(keys.verify(&other_device, Some(&sig)), Err(Untrusted::Invalid(_))), "device");
        let later = signed_message(&d, &cmd, exp + 1);
        assert!(matches!(keys.verify(&later, Some(&sig)), Err(Untrusted::Invalid(_))), "expires_at");
    }

    #[test]
    fn an_ack_is_signed_for_its_job_device_and_expiry() {
        let (d, exp) = (device("phone-1"), 1_800_000_000);
        let ack = Command::Ack { job_id: "r1-phone-1".into() };
        let sig = sign(&d, &ack, exp);
        let keys = trusted();
        assert!(keys.verify(&signed_message(&d, &ack, exp), Some(&sig)).is_ok());
        let other = Command::Ack { job_id: "r1-phone-1.2".into() };
        assert!(keys.verify(&signed_message(&d, &other, exp), Some(&sig)).is_err());
        assert!(keys.verify(&signed_message(&device("phone-2"), &ack, exp), Some(&sig)).is_err());
    }

    /// A cancel is signed as a cancel: the same job's ack (or its cancel for another phone) does not verify.
    #[test]
    fn a_cancel_is_not_an_ack() {
        let (d, exp) = (device("phone-1"), 1_800_000_000);
        let cancel = Command::Cancel { job_id: "r1-phone-1".into() };
        let sig = sign(&d, &cancel, exp);
        let keys = trusted();
        assert!(keys.verify(&signed_message(&d, &cancel, exp), Some(&sig)).is_ok());
        let ack = Command::Ack { job_id: "r1-phone-1".into() };
        assert!(keys.verify(&signed_message(&d, &ack, exp), Some(&sig)).is_err());
        assert!(keys.verify(&signed_message(&device("phone-2"), &cancel, exp), Some(&sig)).is_err());
    }

    /// A command without install windows signs the bytes it signed before windows existed.
    #[test]
    fn a_command_without_windows_signs_what_it_always_signed() {
        let u = UpdateCommand { install_windows: vec![], ..update() };
        let message = signed_message(&device("p"), &Command::Update(u), 7);
        let tail = [&[1u8][..], &1800u64.to_be_bytes(), &7u64.to_be_bytes()].concat();
        assert!(message.ends_with(&tail), "timeout_secs then expires_at, nothing between");
    }

    /// Length prefixes keep field boundaries: moving bytes from one text field to the next changes the message.
    #[test]
    fn field_boundaries_are_unambiguous() {
        let d = device("phone-1");
        let mut a = update();
        let mut b = update();
        (a.rollout_id, a.url) = ("r1".into(), "2http://x".into());
        (b.rollout_id, b.url) = ("r12".into(), "http://x".into());
        assert_ne!(signed_message(&d, &Command::Update(a), 1), signed_message(&d, &Command::Update(b), 1));
        assert!(signed_message(&d, &Command::Ack { job_id: "j".into() }, 1).starts_with(CONTEXT));
    }
}
