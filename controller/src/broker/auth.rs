//! MQTT passwords: derived from one broker secret, so the controller keeps no password list.
//!
//! A device's password is the lowercase hex of HMAC-SHA256(key = the broker secret, message =
//! `"bindwave device password v1\0" + device id`), and the controller's is the same with
//! `"bindwave controller password v1\0"` (the symmetric-key group enrollment of Azure IoT DPS). The secret is
//! 32 random bytes, kept as hex in `data_dir/broker.secret` (mode 0600, made at first start);
//! `bindwave device credentials <id>` prints a device's password. A password is checked in constant time.

use std::path::{Path, PathBuf};

use ring::hmac;

use super::acl::Identity;
use crate::ControllerError;

/// The file in the data directory that holds the broker secret.
pub const SECRET_FILE: &str = "broker.secret";
const DEVICE_CONTEXT: &[u8] = b"bindwave device password v1\0";
const CONTROLLER_CONTEXT: &[u8] = b"bindwave controller password v1\0";
const SECRET_LEN: usize = 32;

/// The key every MQTT password is derived from.
#[derive(Clone)]
pub struct BrokerSecret {
    key: hmac::Key,
}

impl std::fmt::Debug for BrokerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerSecret(..)")
    }
}

impl BrokerSecret {
    /// A secret from its bytes.
    pub fn from_bytes(bytes: &[u8]) -> BrokerSecret {
        BrokerSecret { key: hmac::Key::new(hmac::HMAC_SHA256, bytes) }
    }

    /// The secret in `path` (64 hex digits).
    pub fn load(path: &Path) -> Result<BrokerSecret, ControllerError> {
        let text = std::fs::read_to_string(path).map_err(crate::error::io_err("read", path))?;
        let bytes = hex::decode(text.trim())
            .ok()
            .filter(|b| b.len() == SECRET_LEN)
            .ok_or_else(|| bad_file(path, "is not 64 hex digits (32 bytes)"))?;
        Ok(BrokerSecret::from_bytes(&bytes))
    }

    /// The secret in `path`, made (32 random bytes, mode 0600) if the file does not exist; true if made.
    pub fn load_or_create(path: &Path) -> Result<(BrokerSecret, bool), ControllerError> {
        if path.exists() {
            return Ok((BrokerSecret::load(path)?, false));
        }
        let mut bytes = [0u8; SECRET_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| bad_file(path, "cannot be made: the system's random number generator failed"))?;
        crate::keys::write_private(path, format!("{}\n", hex::encode(bytes)).as_bytes())?;
        Ok((BrokerSecret::from_bytes(&bytes), true))
    }

    /// The password of `identity`.
    pub fn password(&self, identity: &Identity) -> String {
        hex::encode(self.tag(identity).as_ref())
    }

    /// Is `given` the password of `identity`? In constant time.
    pub fn verify(&self, identity: &Identity, given: &[u8]) -> bool {
        let Some(tag) = std::str::from_utf8(given).ok().and_then(|hex_text| hex::decode(hex_text).ok()) else {
            return false;
        };
        let (context, name) = Self::message(identity);
        hmac::verify(&self.key, &[context, name.as_bytes()].concat(), &tag).is_ok()
    }

    fn tag(&self, identity: &Identity) -> hmac::Tag {
        let (context, name) = Self::message(identity);
        hmac::sign(&self.key, &[context, name.as_bytes()].concat())
    }

    fn message(identity: &Identity) -> (&'static [u8], &str) {
        match identity {
            Identity::Controller => (CONTROLLER_CONTEXT, ""),
            Identity::Device(id) => (DEVICE_CONTEXT, id.as_str()),
        }
    }
}

/// What a client showed when it connected.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// The CN of the client certificate the TLS handshake verified, on a listener that requires one.
    pub cert_cn: Option<&'a str>,
}

/// How the broker learns who a client is.
#[derive(Debug, Clone)]
pub enum Authentication {
    /// A verified client certificate: its CN is the identity, and no password is needed.
    Certificate,
    /// A username (the identity) and its derived password.
    Password(BrokerSecret),
}

/// Why a client was refused at CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginRefused {
    #[error("no username (anonymous clients are refused)")]
    Anonymous,
    #[error("username {0:?} is neither a device id nor the controller")]
    UnknownIdentity(String),
    #[error("wrong password for {0}")]
    BadPassword(String),
    #[error("no client certificate with a CN (the listener requires one)")]
    NoCertificate,
    #[error("client id {client_id:?} is not its identity {identity:?} (it would take over that client's session)")]
    ClientId { client_id: String, identity: String },
}

impl Authentication {
    /// Who the client is, or why it is refused. The client id must be the identity.
    pub fn login(&self, login: Login<'_>) -> Result<Identity, LoginRefused> {
        let name = match self {
            Authentication::Certificate => login.cert_cn.ok_or(LoginRefused::NoCertificate)?,
            Authentication::Password(_) => login.username.filter(|u| !u.is_empty()).ok_or(LoginRefused::Anonymous)?,
        };
        let identity = Identity::parse(name).ok_or_else(|| LoginRefused::UnknownIdentity(name.to_string()))?;
        if let Authentication::Password(secret) = self {
            if !secret.verify(&identity, login.password.unwrap_or_default()) {
                return Err(LoginRefused::BadPassword(name.to_string()));
            }
        }
        if login.client_id != identity.name() {
            return Err(LoginRefused::ClientId { client_id: login.client_id.into(), identity: name.into() });
        }
        Ok(identity)
    }
}

/// Where the broker secret of a data directory is.
pub fn secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SECRET_FILE)
}

fn bad_file(path: &Path, detail: &str) -> ControllerError {
    ControllerError::KeyFile { path: path.to_path_buf(), detail: format!("the broker secret {detail}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindwave_proto::wire::DeviceId;

    fn device(id: &str) -> Identity {
        Identity::Device(DeviceId::new(id).unwrap())
    }

    #[test]
    fn passwords_are_the_documented_hmac() {
        let secret = BrokerSecret::from_bytes(&[7u8; 32]);
        // The scheme, computed independently of `password`.
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]);
        let expected = hex::encode(hmac::sign(&key, b"bindwave device password v1\0phone-a").as_ref());
        assert_eq!(secret.password(&device("phone-a")), expected);
        let expected = hex::encode(hmac::sign(&key, b"bindwave controller password v1\0").as_ref());
        assert_eq!(secret.password(&Identity::Controller), expected);
        assert_eq!(expected.len(), 64);
    }

    #[test]
    fn a_password_opens_only_its_own_identity() {
        let secret = BrokerSecret::from_bytes(&[1u8; 32]);
        let a = secret.password(&device("phone-a"));
        assert!(secret.verify(&device("phone-a"), a.as_bytes()));
        assert!(!secret.verify(&device("phone-b"), a.as_bytes()));
        assert!(!secret.verify(&Identity::Controller, a.as_bytes()));
        for bad in ["", "zz", &a[..62], "\u{ff}"] {
            assert!(!secret.verify(&device("phone-a"), bad.as_bytes()), "{bad:?}");
        }
        let other = BrokerSecret::from_bytes(&[2u8; 32]);
        assert!(!other.verify(&device("phone-a"), a.as_bytes()));
    }

    fn login<'a>(client_id: &'a str, username: Option<&'a str>, password: Option<&'a str>) -> Login<'a> {
        Login { client_id, username, password: password.map(str::as_bytes), cert_cn: None }
    }

    #[test]
    fn a_password_login_needs_the_identitys_password_and_its_client_id() {
        let secret = BrokerSecret::from_bytes(&[3u8; 32]);
        let auth = Authentication::Password(secret.clone());
        let a = secret.password(&device("phone-a"));
        let c = secret.password(&Identity::Controller);
        assert_eq!(auth.login(login("phone-a", Some("phone-a"), Some(&a))), Ok(device("phone-a")));
        assert_eq!(
            auth.login(login("bindwave:controller", Some("bindwave:controller"), Some(&c))),
            Ok(Identity::Controller)
        );
        assert_eq!(auth.login(login("phone-a", None, None)), Err(LoginRefused::Anonymous));
        assert_eq!(auth.login(login("phone-a", Some(""), Some(&a))), Err(LoginRefused::Anonymous));
        assert_eq!(
            auth.login(login("phone-a", Some("phone-a"), None)),
            Err(LoginRefused::BadPassword("phone-a".into()))
        );
        assert_eq!(
            auth.login(login("phone-b", Some("phone-b"), Some(&a))),
            Err(LoginRefused::BadPassword("phone-b".into()))
        );
        assert!(matches!(auth.login(login("phone-b", Some("phone-a"), Some(&a))), Err(LoginRefused::ClientId { .. })));
        assert!(matches!(auth.login(login("x", Some("a/b"), Some(&a))), Err(LoginRefused::UnknownIdentity(_))));
        // The controller's client id is its identity too.
        assert!(matches!(
            auth.login(login("bindwave-controller", Some("bindwave:controller"), Some(&c))),
            Err(LoginRefused::ClientId { .. })
        ));
    }

    #[test]
    fn a_certificate_login_takes_the_cn_and_ignores_the_username() {
        let auth = Authentication::Certificate;
        let with_cert =
            |client_id, cn| Login { client_id, username: Some("bindwave:controller"), password: None, cert_cn: cn };
        assert_eq!(auth.login(with_cert("phone-a", Some("phone-a"))), Ok(device("phone-a")));
        assert_eq!(auth.login(with_cert("phone-a", None)), Err(LoginRefused::NoCertificate));
        assert!(matches!(auth.login(with_cert("phone-b", Some("phone-a"))), Err(LoginRefused::ClientId { .. })));
    }

    #[test]
    fn the_secret_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = secret_path(dir.path());
        let (made, created) = BrokerSecret::load_or_create(&path).unwrap();
        assert!(created);
        let (again, created) = BrokerSecret::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(made.password(&device("x")), again.password(&device("x")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex\n").unwrap();
        let e = BrokerSecret::load(&path).unwrap_err().to_string();
        assert!(e.contains("broker.secret") && e.contains("64 hex digits"), "{e}");
    }
}
