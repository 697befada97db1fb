//! Building and reading bind files on the operator's machine: `bindwave image pack` and `image inspect`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use bindwave_proto::bind::{parse_header, Parsed, MAX_HEADER_LEN, PRELUDE_LEN};
use bindwave_proto::verify::{Expected, Verifier};
use bindwave_proto::{BindHeader, HardwareLevel, SoftwareVersion};
use sha2::{Digest, Sha256};

use crate::error::io_err;
use crate::ControllerError;

/// Writes a bind: the header for `payload`, then the payload, streamed (the payload is read twice: once to
/// hash it, once to copy it). Returns the header written.
pub fn pack(
    payload: &Path,
    version: SoftwareVersion,
    hardware_levels: Option<Vec<HardwareLevel>>,
    out: &Path,
) -> Result<BindHeader, ControllerError> {
    let mut hasher = Sha256::new();
    let mut reader = BufReader::new(File::open(payload).map_err(io_err("open", payload))?);
    let len = std::io::copy(&mut reader, &mut hasher).map_err(io_err("read", payload))?;
    let header = BindHeader::new(version, hardware_levels, len, hasher.finalize().into());
    let tmp = out.with_extension("partial");
    let write = || -> std::io::Result<()> {
        let mut w = BufWriter::new(File::create(&tmp)?);
        w.write_all(&header.encode().map_err(std::io::Error::other)?)?;
        let mut reader = BufReader::new(File::open(payload)?);
        let copied = std::io::copy(&mut reader, &mut w)?;
        if copied != len {
            return Err(std::io::Error::other("the payload changed while it was being packed"));
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, out)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err("write", out)(e)
    })?;
    Ok(header)
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
    pub skipped_fields: Vec<u16>,
}

/// Reads a bind's header and checks the whole file (lengths and payload digest), streaming.
pub fn inspect(path: &Path) -> Result<Inspection, ControllerError> {
    let mut reader = BufReader::new(File::open(path).map_err(io_err("open", path))?);
    // First the header alone, so a malformed header is reported as such even if the file is huge.
    let mut head = Vec::new();
    while let Parsed::Incomplete { needed } = parse_header(&head)? {
        debug_assert!(head.len() + needed <= PRELUDE_LEN + MAX_HEADER_LEN as usize);
        let before = head.len();
        (&mut reader).take(needed as u64).read_to_end(&mut head).map_err(io_err("read", path))?;
        if head.len() == before {
            return Err(ControllerError::InvalidBind(bindwave_proto::wire::Reason::MalformedBind {
                detail: format!("the file ends after {} bytes, inside the header", head.len()),
                field: None,
            }));
        }
    }
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
    Ok(Inspection {
        file_size: v.file_len,
        file_sha256: v.file_sha256,
        header_len: head.len(),
        payload_sha256: v.header.payload_sha256_hex(),
        skipped_fields: v.header.skipped_fields(),
        software_version: v.header.software_version,
        hardware_levels: v.header.hardware_levels,
        payload_len: v.header.payload_len,
        signed: v.header.signature.is_some(),
    })
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
        pack(&payload, "V3 R3.18.0".parse().unwrap(), Some(vec![HardwareLevel(4), HardwareLevel(3)]), &out).unwrap();
        let i = inspect(&out).unwrap();
        assert_eq!(i.payload_len, 300_000);
        assert_eq!(i.hardware_levels, Some(vec![HardwareLevel(3), HardwareLevel(4)]));
        assert_eq!(i.file_size, std::fs::metadata(&out).unwrap().len());

        // A flipped payload byte is caught.
        let mut bytes = std::fs::read(&out).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&out, &bytes).unwrap();
        assert!(inspect(&out).unwrap_err().to_string().contains("sha-256 mismatch"));
        // A raw payload is not a bind.
        assert!(inspect(&payload).unwrap_err().to_string().contains("not a bind file"));
    }

    #[test]
    fn levels() {
        assert_eq!(parse_levels("3, 4").unwrap(), vec![HardwareLevel(3), HardwareLevel(4)]);
        assert!(parse_levels("").is_err());
        assert!(parse_levels("x").is_err());
        assert!(parse_levels("70000").is_err());
    }
}
