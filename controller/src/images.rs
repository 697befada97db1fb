//! Bind files on the operator's machine and at the service's door: `bindwave image pack`, `sign` and
//! `inspect`, and which uploaded binds the service admits ([`ImagePolicy`]).
//!
//! Payloads are streamed: nothing larger than the header and one buffer is held in memory, whatever the
//! bind's size. A bind is written to a temporary file in its destination's directory, synced, and renamed
//! into place, so an interrupted pack or sign never leaves half a bind under the final name.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bindwave_proto::bind::{parse_header, Parsed, MAX_HEADER_LEN, PRELUDE_LEN};
use bindwave_proto::verify::{Expected, Verifier};
use bindwave_proto::wire::Reason;
use bindwave_proto::{BindHeader, HardwareLevel, KeyId, PublicKey, SoftwareVersion, TrustedKeys, Untrusted};
use sha2::{Digest, Sha256};

use crate::engine::ReleasePolicy;
use crate::error::io_err;
use crate::keys::SigningKey;
use crate::ControllerError;

/// Writes a bind: the header for `payload` (signed with `key`, if given), then the payload, streamed (the
/// payload is read twice: once to hash it, once to copy it). An empty payload is refused. Returns the header
/// written.
pub fn pack(
    payload: &Path,
    version: SoftwareVersion,
    hardware_levels: Option<Vec<HardwareLevel>>,
    out: &Path,
    key: Option<&SigningKey>,
) -> Result<BindHeader, ControllerError> {
    let mut hasher = Sha256::new();
    let mut reader = BufReader::new(File::open(payload).map_err(io_err("open", payload))?);
    let len = std::io::copy(&mut reader, &mut hasher).map_err(io_err("read", payload))?;
    if len == 0 {
        return Err(ControllerError::EmptyPayload { path: payload.to_path_buf() });
    }
    let mut header = BindHeader::new(version, hardware_levels, len, hasher.finalize().into());
    if let Some(key) = key {
        header = sign_header(header, key)?;
    }
    let encoded = header.encode()?;
    write_atomically(out, |w| {
        w.write_all(&encoded)?;
        let mut reader = BufReader::new(File::open(payload)?);
        let copied = std::io::copy(&mut reader, w)?;
        if copied != len {
            return Err(std::io::Error::other("the payload changed while it was being packed"));
        }
        Ok(())
    })?;
    Ok(header)
}

/// `header` signed by `key` (a signature it had is replaced).
pub fn sign_header(header: BindHeader, key: &SigningKey) -> Result<BindHeader, ControllerError> {
    let header = header.unsigned();
    let signature = key.sign(&header.signed_message()?);
    Ok(header.signed(signature)?)
}

/// Signs the bind at `bind` with `key`, writing the signed bind to `out` (which may be `bind` itself: it is
/// replaced atomically). The payload is streamed through and checked against its digest on the way: a bind
/// whose payload does not match its header is not signed. A previous signature is replaced. Returns the
/// signed header.
pub fn sign(bind: &Path, key: &SigningKey, out: &Path) -> Result<BindHeader, ControllerError> {
    let mut reader = BufReader::new(File::open(bind).map_err(io_err("open", bind))?);
    let (header, head) = read_header(&mut reader, bind)?;
    if header.payload_len == 0 {
        return Err(ControllerError::EmptyPayload { path: bind.to_path_buf() });
    }
    let signed = sign_header(header, key)?;
    let encoded = signed.encode()?;
    let mut verifier = Verifier::new(Expected::default());
    verifier.feed(&head).map_err(ControllerError::InvalidBind)?;
    let mut bad = None;
    write_atomically(out, |w| {
        w.write_all(&encoded)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if let Err(reason) = verifier.feed(&buf[..n]) {
                bad = Some(reason);
                return Err(std::io::Error::other("the bind does not verify"));
            }
            w.write_all(&buf[..n])?;
        }
        let finished = std::mem::replace(&mut verifier, Verifier::new(Expected::default())).finish();
        if let Err(reason) = finished {
            bad = Some(reason);
            return Err(std::io::Error::other("the bind does not verify"));
        }
        Ok(())
    })
    .map_err(|e| bad.take().map_or(e, ControllerError::InvalidBind))?;
    Ok(signed)
}

/// Writes `out` through `write` into a temporary file beside it, syncs it, and renames it into place (then
/// syncs the directory). On any error the temporary file is removed and `out` is left as it was.
fn write_atomically(
    out: &Path,
    write: impl FnOnce(&mut BufWriter<&mut File>) -> std::io::Result<()>,
) -> Result<(), ControllerError> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".bindwave-")
        .suffix(".partial")
        .tempfile_in(&dir)
        .map_err(io_err("create a temporary file in", &dir))?;
    let written = (|| {
        let mut w = BufWriter::new(tmp.as_file_mut());
        write(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    written.map_err(io_err("write", out))?;
    tmp.persist(out).map_err(|e| io_err("rename into place", out)(e.error))?;
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads the header alone from the start of `reader`: the header and its bytes. A malformed header is
/// reported as such, however large the file.
fn read_header(reader: &mut impl Read, path: &Path) -> Result<(BindHeader, Vec<u8>), ControllerError> {
    let mut head = Vec::new();
    loop {
        match parse_header(&head)? {
            Parsed::Complete { header, .. } => return Ok((header, head)),
            Parsed::Incomplete { needed } => {
                debug_assert!(head.len() + needed <= PRELUDE_LEN + MAX_HEADER_LEN as usize);
                let before = head.len();
                reader.take(needed as u64).read_to_end(&mut head).map_err(io_err("read", path))?;
                if head.len() == before {
                    return Err(ControllerError::InvalidBind(Reason::MalformedBind {
                        detail: format!("the file ends after {} bytes, inside the header", head.len()),
                        field: None,
                    }));
                }
            }
        }
    }
}

/// Whether a signature checks out, as `image inspect` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureCheck {
    /// The bind is not signed.
    Unsigned,
    /// Signed, but no key was given to check it against.
    NotChecked,
    /// It verifies under one of the keys given.
    Verified,
    /// Signed by a key that is not among those given.
    UntrustedKey,
    /// Signed under one of the given keys' ids, and it does not verify: altered after signing, or forged.
    Invalid,
}

/// What `image inspect` shows.
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    pub file_size: u64,
    pub file_sha256: String,
    pub header_len: usize,
    pub software_version: SoftwareVersion,
    pub hardware_levels: Option<Vec<HardwareLevel>>,
    pub payload_len: u64,
    pub payload_sha256: String,
    pub signed: bool,
    /// The id of the key the bind says signed it.
    pub signed_by: Option<KeyId>,
    pub signature: SignatureCheck,
    pub skipped_fields: Vec<u16>,
}

/// Reads a bind's header and checks the whole file (lengths and payload digest), streaming; the signature
/// is checked against `trusted`, if any key is given.
pub fn inspect(path: &Path, trusted: &TrustedKeys) -> Result<Inspection, ControllerError> {
    let mut reader = BufReader::new(File::open(path).map_err(io_err("open", path))?);
    // First the header alone, so a malformed header is reported as such even if the file is huge.
    let (_, head) = read_header(&mut reader, path)?;
    let mut verifier = Verifier::new(Expected::default());
    verifier.feed(&head).map_err(ControllerError::InvalidBind)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        verifier.feed(&buf[..n]).map_err(ControllerError::InvalidBind)?;
    }
    let v = verifier.finish().map_err(ControllerError::InvalidBind)?;
    let signature = match v.header.verify_signature(trusted) {
        Err(Untrusted::Unsigned) => SignatureCheck::Unsigned,
        _ if trusted.is_empty() => SignatureCheck::NotChecked,
        Ok(_) => SignatureCheck::Verified,
        Err(Untrusted::UnknownKey(_)) => SignatureCheck::UntrustedKey,
        Err(Untrusted::Invalid(_)) => SignatureCheck::Invalid,
    };
    Ok(Inspection {
        file_size: v.file_len,
        file_sha256: v.file_sha256,
        header_len: head.len(),
        payload_sha256: v.header.payload_sha256_hex(),
        skipped_fields: v.header.skipped_fields(),
        signed: v.header.signature.is_some(),
        signed_by: v.header.signature.as_ref().map(|s| s.key_id),
        signature,
        software_version: v.header.software_version,
        hardware_levels: v.header.hardware_levels,
        payload_len: v.header.payload_len,
    })
}

/// A public key given on the command line: an `ed25519:<hex>` line, or the path of a key file.
pub fn public_key_arg(arg: &str) -> Result<PublicKey, ControllerError> {
    if arg.trim_start().starts_with("ed25519:") {
        return Ok(PublicKey::parse(arg)?);
    }
    crate::keys::load_public(Path::new(arg))
}

/// Which uploaded binds the service adds, and which images it rolls out: those signed by one of its trusted
/// release keys (`release_keys`), and, only with `allow_unsigned_images` (a lab setting), unsigned ones. A
/// signed bind must verify either way. A bind with an empty payload is never added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImagePolicy {
    pub release_keys: TrustedKeys,
    pub allow_unsigned: bool,
}

impl ImagePolicy {
    /// Whether a bind whose header is `header` may be added: the release key that verified it, or `None`
    /// for an unsigned bind the lab setting lets in.
    pub fn admit(&self, header: &BindHeader) -> Result<Option<KeyId>, ControllerError> {
        if header.payload_len == 0 {
            return Err(ControllerError::InvalidBind(Reason::MalformedBind {
                detail: "the payload is empty: a bind carries a firmware image".into(),
                field: Some("payload_length".into()),
            }));
        }
        match header.verify_signature(&self.release_keys) {
            Ok(signer) => Ok(Some(signer)),
            Err(Untrusted::Unsigned) if self.allow_unsigned => Ok(None),
            Err(why) => Err(ControllerError::ImageUntrusted { why }),
        }
    }

    /// What the engine checks before it rolls an image out.
    pub fn release(&self) -> ReleasePolicy {
        ReleasePolicy { trusted: self.release_keys.ids().collect(), allow_unsigned: self.allow_unsigned }
    }
}

/// `3,4` -> levels 3 and 4.
pub fn parse_levels(s: &str) -> Result<Vec<HardwareLevel>, String> {
    let levels: Result<Vec<_>, _> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u16>().map(HardwareLevel).map_err(|_| format!("{p:?} is not a hardware level (0-65535)")))
        .collect();
    match levels {
        Ok(l) if l.is_empty() => Err("give at least one hardware level, e.g. 3,4".into()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_then_inspect() {
        let dir = tempfile::tempdir().unwrap();
        let payload = dir.path().join("fw.img");
        std::fs::write(&payload, vec![7u8; 300_000]).unwrap();
        let out = dir.path().join("fw.bind");
        pack(&payload, "V3 R3.18.0".parse().unwrap(), Some(vec![HardwareLevel(4), HardwareLevel(3)]), &out, None)
            .unwrap();
        let i = inspect(&out, &TrustedKeys::default()).unwrap();
        assert_eq!(i.payload_len, 300_000);
        assert_eq!(i.hardware_levels, Some(vec![HardwareLevel(3), HardwareLevel(4)]));
        assert_eq!(i.file_size, std::fs::metadata(&out).unwrap().len());

        // A flipped payload byte is caught.
        let mut bytes = std::fs::read(&out).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&out, &bytes).unwrap();
        assert!(inspect(&out, &TrustedKeys::default()).unwrap_err().to_string().contains("sha-256 mismatch"));
        // A raw payload is not a bind.
        assert!(inspect(&payload, &TrustedKeys::default()).unwrap_err().to_string().contains("not a bind file"));
    }

    #[test]
    fn levels() {
        assert_eq!(parse_levels("3, 4").unwrap(), vec![HardwareLevel(3), HardwareLevel(4)]);
        assert!(parse_levels("").is_err());
        assert!(parse_levels("x").is_err());
        assert!(parse_levels("70000").is_err());
    }

    fn payload(dir: &Path, bytes: &[u8]) -> PathBuf {
        let path = dir.join("fw.img");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn an_empty_payload_is_never_packed_nor_admitted() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("fw.bind");
        let err = pack(&payload(dir.path(), b""), "V3 R1.0.0".parse().unwrap(), None, &out, None).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        assert!(!out.exists(), "nothing written");
        let header = BindHeader::new("V3 R1.0.0".parse().unwrap(), None, 0, Sha256::digest(b"").into());
        let lab = ImagePolicy { allow_unsigned: true, ..Default::default() };
        let err = lab.admit(&header).unwrap_err().to_string();
        assert!(err.contains("payload is empty"), "{err}");
    }

    #[test]
    fn sign_in_place_re_sign_and_inspect_against_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (SigningKey::generate().unwrap(), SigningKey::generate().unwrap());
        let bind = dir.path().join("fw.bind");
        let body = vec![9u8; 200_000];
        pack(&payload(dir.path(), &body), "V3 R3.18.0".parse().unwrap(), None, &bind, None).unwrap();
        let none = TrustedKeys::default();
        assert_eq!(inspect(&bind, &none).unwrap().signature, SignatureCheck::Unsigned);

        sign(&bind, &first, &bind).unwrap();
        let i = inspect(&bind, &none).unwrap();
        assert_eq!((i.signature, i.signed_by), (SignatureCheck::NotChecked, Some(first.key_id())));
        assert_eq!(i.payload_len, 200_000);
        let trust_first = TrustedKeys::new([first.public()]);
        assert_eq!(inspect(&bind, &trust_first).unwrap().signature, SignatureCheck::Verified);

        // Re-signed elsewhere: the old signature is replaced, the original left as it was.
        let other = dir.path().join("other.bind");
        sign(&bind, &second, &other).unwrap();
        assert_eq!(inspect(&other, &trust_first).unwrap().signature, SignatureCheck::UntrustedKey);
        assert_eq!(inspect(&bind, &trust_first).unwrap().signature, SignatureCheck::Verified);
        let both = TrustedKeys::new([first.public(), second.public()]);
        assert_eq!(inspect(&other, &both).unwrap().signed_by, Some(second.key_id()));

        // One flipped bit in the header's version: the signature fails.
        let mut bytes = std::fs::read(&bind).unwrap();
        let at = bytes.windows(4).position(|w| w == b"3.18").unwrap();
        bytes[at] = b'4';
        std::fs::write(&other, &bytes).unwrap();
        assert_eq!(inspect(&other, &trust_first).unwrap().signature, SignatureCheck::Invalid);

        // A bind whose payload no longer matches its digest is not signed, and is left as it was.
        let mut bytes = std::fs::read(&bind).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&other, &bytes).unwrap();
        let err = sign(&other, &first, &other).unwrap_err().to_string();
        assert!(err.contains("sha-256 mismatch"), "{err}");
        assert_eq!(std::fs::read(&other).unwrap(), bytes);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn packed_signed_binds_are_admitted_only_under_a_trusted_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        let bind = dir.path().join("fw.bind");
        let header =
            pack(&payload(dir.path(), b"firmware"), "V3 R3.18.0".parse().unwrap(), None, &bind, Some(&key)).unwrap();
        let strict = ImagePolicy { release_keys: TrustedKeys::new([key.public()]), allow_unsigned: false };
        assert_eq!(strict.admit(&header).unwrap(), Some(key.key_id()));
        let unsigned = header.clone().unsigned();
        let err = strict.admit(&unsigned).unwrap_err().to_string();
        assert!(err.contains("not signed") && err.contains("bindwave image sign"), "{err}");
        let lab = ImagePolicy { allow_unsigned: true, ..strict.clone() };
        assert_eq!(lab.admit(&unsigned).unwrap(), None);
        let stranger = ImagePolicy { release_keys: TrustedKeys::default(), allow_unsigned: true };
        let err = stranger.admit(&header).unwrap_err().to_string();
        assert!(err.contains("not trusted here") && err.contains("release_keys"), "{err}");
        assert_eq!(strict.release().trusted.into_iter().collect::<Vec<_>>(), vec![key.key_id()]);
    }
}
