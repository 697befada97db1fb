//! The controller's Ed25519 private keys: a release key that signs binds (`bindwave image keygen`, `sign`,
//! `pack --sign-key`) and the controller's own key that signs its commands to phones.
//!
//! A private key file is PKCS#8 in PEM (`-----BEGIN PRIVATE KEY-----`), which `openssl pkey` reads too; it
//! is written with mode 0600. Its public half goes beside it as `<file>.pub`, in PEM, which is what agents
//! pin (see [`bindwave_proto::signature`]).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use bindwave_proto::signature::{pem_decode, pem_encode};
use bindwave_proto::{KeyId, PublicKey, Signature};
use ring::signature::{Ed25519KeyPair, KeyPair as _};

use crate::ControllerError;

/// The DER before the 32-byte seed of an Ed25519 private key in PKCS#8 v1 (RFC 8410, section 7).
const PKCS8_V1_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
/// The same before the seed in ring's PKCS#8 v2 document (version 1, the public key after the seed).
const RING_V2_PREFIX: [u8; 16] =
    [0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// An Ed25519 key pair that signs.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    /// The PKCS#8 document, kept to write the key out.
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.key_id())
    }
}

impl SigningKey {
    /// A new random key, from the operating system's generator. It is kept (and written) as PKCS#8 v1, the
    /// RFC 8410 form `openssl genpkey -algorithm ed25519` writes and every OpenSSL reads; ring's own v2
    /// document (with the public key inside) is refused by OpenSSL 3.0.
    pub fn generate() -> Result<SigningKey, ControllerError> {
        let rng = ring::rand::SystemRandom::new();
        let v2 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| ControllerError::Key { detail: "the system's random generator failed".into() })?;
        let v2 = v2.as_ref();
        let seed = v2
            .strip_prefix(&RING_V2_PREFIX[..])
            .and_then(|rest| rest.get(..32))
            .ok_or_else(|| ControllerError::Key { detail: "unexpected PKCS#8 document from ring".into() })?;
        let mut v1 = PKCS8_V1_PREFIX.to_vec();
        v1.extend_from_slice(seed);
        SigningKey::from_pkcs8(&v1)
    }

    fn from_pkcs8(der: &[u8]) -> Result<SigningKey, ControllerError> {
        // `maybe_unchecked` also takes PKCS#8 v1 (no public key inside), which `openssl genpkey` writes.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| ControllerError::Key {
            detail: "not an Ed25519 private key in PKCS#8 (make one with `bindwave image keygen`)".into(),
        })?;
        Ok(SigningKey { pair, pkcs8: der.to_vec() })
    }

    /// Reads a PEM private key.
    pub fn from_pem(text: &str) -> Result<SigningKey, ControllerError> {
        let der = pem_decode("PRIVATE KEY", text).ok_or_else(|| ControllerError::Key {
            detail: "expected a PEM block `-----BEGIN PRIVATE KEY-----` (make one with `bindwave image keygen`)".into(),
        })?;
        SigningKey::from_pkcs8(&der)
    }

    pub fn to_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.pkcs8)
    }

    pub fn public(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(bytes)
    }

    pub fn key_id(&self) -> KeyId {
        self.public().key_id()
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        let mut bytes = [0u8; 64];
        bytes.copy_from_slice(self.pair.sign(message).as_ref());
        Signature { key_id: self.key_id(), bytes }
    }

    /// Reads the private key at `path`.
    pub fn load(path: &Path) -> Result<SigningKey, ControllerError> {
        let text = fs::read_to_string(path).map_err(|source| ControllerError::Io {
            action: "read the private key",
            path: path.to_path_buf(),
            source,
        })?;
        SigningKey::from_pem(&text).map_err(|err| match err {
            ControllerError::Key { detail } => ControllerError::KeyFile { path: path.to_path_buf(), detail },
            other => other,
        })
    }

    /// Writes a new key to `path` (mode 0600; refused if the file exists) and its public half to
    /// `<path>.pub`. Returns the key.
    pub fn create(path: &Path) -> Result<SigningKey, ControllerError> {
        let key = SigningKey::generate()?;
        write_private(path, key.to_pem().as_bytes())?;
        let public = public_path(path);
        fs::write(&public, key.public().to_pem()).map_err(|source| ControllerError::Io {
            action: "write the public key",
            path: public.clone(),
            source,
        })?;
        Ok(key)
    }

    /// The key at `path`, made (as [`SigningKey::create`]) if the file does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<(SigningKey, bool), ControllerError> {
        if path.exists() {
            Ok((SigningKey::load(path)?, false))
        } else {
            Ok((SigningKey::create(path)?, true))
        }
    }
}

/// Where a private key's public half is written: `<path>.pub`.
pub fn public_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Reads a public key file (PEM or `ed25519:<hex>`).
pub fn load_public(path: &Path) -> Result<PublicKey, ControllerError> {
    let text = fs::read_to_string(path).map_err(|source| ControllerError::Io {
        action: "read the public key",
        path: path.to_path_buf(),
        source,
    })?;
    PublicKey::parse(&text)
        .map_err(|err| ControllerError::KeyFile { path: path.to_path_buf(), detail: err.to_string() })
}

/// Creates `path` with mode 0600 (owner only) and writes `bytes`; refuses to replace an existing file.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ControllerError> {
    let io = |action, source| ControllerError::Io { action, path: path.to_path_buf(), source };
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            ControllerError::KeyFile {
                path: path.to_path_buf(),
                detail: "the file exists already; it is not replaced (remove it first, or choose another --out)".into(),
            }
        } else {
            io("create", source)
        }
    })?;
    file.write_all(bytes).map_err(|source| io("write", source))?;
    file.sync_all().map_err(|source| io("sync", source))
}

#[cfg(test)]
mod tests {
    use bindwave_proto::TrustedKeys;

    use super::*;

    #[test]
    fn a_created_key_reads_back_signs_and_its_public_file_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release.key");
        let key = SigningKey::create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let again = SigningKey::load(&path).unwrap();
        assert_eq!(again.key_id(), key.key_id());
        let public = load_public(&public_path(&path)).unwrap();
        assert_eq!(public, key.public());
        let sig = again.sign(b"message");
        assert_eq!(TrustedKeys::new([public]).verify(b"message", Some(&sig)), Ok(key.key_id()));
        // Never overwritten.
        let err = SigningKey::create(&path).unwrap_err().to_string();
        assert!(err.contains("exists already"), "{err}");
    }

    #[test]
    fn a_key_is_written_as_pkcs8_v1_as_openssl_writes_it() {
        let key = SigningKey::generate().unwrap();
        let der = pem_decode("PRIVATE KEY", &key.to_pem()).unwrap();
        assert_eq!(der.len(), 48);
        assert_eq!(der[..16], PKCS8_V1_PREFIX);
        // And a key OpenSSL made reads (`openssl genpkey -algorithm ed25519`; a throwaway, made for this test).
        let openssl = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAyGRLD2WK62dg0G8MzdgWFQPMJJ0+C6X08NkkEdVxoJ\n-----END PRIVATE KEY-----\n";
        let read = SigningKey::from_pem(openssl).unwrap();
        assert_eq!(read.to_pem(), openssl);
    }

    #[test]
    fn a_file_that_is_not_a_private_key_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        fs::write(&path, "hello").unwrap();
        let err = SigningKey::load(&path).unwrap_err().to_string();
        assert!(err.contains("PRIVATE KEY") && err.contains("keygen"), "{err}");
    }
}
