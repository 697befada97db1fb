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
    /// A new random key, from the operating system's generator.
    pub fn generate() -> Result<SigningKey, ControllerError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| ControllerError::Key { detail: "the system's random generator failed".into() })?;
        SigningKey::from_pkcs8(pkcs8.as_ref())
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
    fn a_file_that_is_not_a_private_key_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        fs::write(&path, "hello").unwrap();
        let err = SigningKey::load(&path).unwrap_err().to_string();
        assert!(err.contains("PRIVATE KEY") && err.contains("keygen"), "{err}");
    }
}
