//! A development PKI: a CA, a server certificate, and client certificates (whose CN is the MQTT identity),
//! made with rcgen. `bindwave certs dev` writes one into a directory; `bindwave serve` makes one in
//! `data_dir/tls/` at first start when no server certificate is configured.
//!
//! Keys are ECDSA P-256. Private keys are written with mode 0600 and no file is ever overwritten. As mkcert
//! does for development certificates, the CA is valid for about ten years and the certificates it issues for
//! two to three, from the start of last year (so a phone whose clock is a little behind still accepts them).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::ControllerError;

/// Years a development CA is valid for, counted from the start of this year.
pub const CA_YEARS: i32 = 10;
/// Years a certificate it issues is valid for, counted from the start of this year.
pub const LEAF_YEARS: i32 = 3;

/// The CA, server and controller files of a development PKI, in `data_dir/tls/` or `bindwave certs dev`'s
/// directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";
pub const CONTROLLER_CERT: &str = "controller.pem";
pub const CONTROLLER_KEY: &str = "controller.key";

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A development CA that issues server and client certificates.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    pem: Issued,
}

impl DevCa {
    /// A new CA, named `Bindwave development CA`.
    pub fn generate() -> Result<DevCa, ControllerError> {
        let key = KeyPair::generate().map_err(cert_err("make the CA key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("make the CA"))?;
        params.distinguished_name = name("Bindwave development CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        set_validity(&mut params, CA_YEARS);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).map_err(cert_err("sign the CA"))?;
        let pem = Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        Ok(DevCa { issuer: Issuer::new(params, key), pem })
    }

    /// The CA's certificate and key.
    pub fn pem(&self) -> &Issued {
        &self.pem
    }

    /// A server certificate for these host names and IP addresses (its subject alternative names).
    pub fn server(&self, hosts: &[String]) -> Result<Issued, ControllerError> {
        let mut params = CertificateParams::new(hosts.to_vec()).map_err(cert_err("name the server certificate"))?;
        params.distinguished_name = name(hosts.first().map_or("bindwave", String::as_str));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.issue(params, "the server certificate")
    }

    /// A client certificate whose CN is `identity` (a device id, or the controller's `bindwave:controller`).
    pub fn client(&self, identity: &str) -> Result<Issued, ControllerError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("make a client certificate"))?;
        params.distinguished_name = name(identity);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.issue(params, "a client certificate")
    }

    fn issue(&self, mut params: CertificateParams, what: &'static str) -> Result<Issued, ControllerError> {
        set_validity(&mut params, LEAF_YEARS);
        let key = KeyPair::generate().map_err(cert_err(what))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_err(what))?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// From January 1st of last year to January 1st `years` after this one (rcgen's default is 1975 to 4096).
fn set_validity(params: &mut CertificateParams, years: i32) {
    let (from, until) = validity_years(std::time::SystemTime::now(), years);
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
}

/// The first and last year of a validity of `years` from `now`.
fn validity_years(now: std::time::SystemTime, years: i32) -> (i32, i32) {
    // Seconds in an average Gregorian year: the year is exact but within a day of New Year, which last
    // year's start as the beginning covers.
    let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let year = 1970 + i32::try_from(secs / 31_556_952).unwrap_or(0);
    (year - 1, year + years)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn cert_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> ControllerError {
    move |source| ControllerError::Certificate { what, source }
}

/// The names a server certificate is made for: localhost, 127.0.0.1, ::1, this machine's host name, then
/// `extra` (the hosts of the public URL, of the listen address, of `--host`), without repeats or wildcard
/// addresses.
pub fn server_hosts(extra: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    hosts.extend(hostname());
    hosts.extend(extra.iter().cloned());
    let mut unique = Vec::new();
    for host in hosts {
        let host = host.trim().trim_start_matches('[').trim_end_matches(']').to_string();
        if !host.is_empty() && host != "0.0.0.0" && host != "::" && !unique.contains(&host) {
            unique.push(host);
        }
    }
    unique
}

/// This machine's host name, if it has one.
fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// The host of `scheme://host[:port][/...]`.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// Writes a certificate (mode 0644) and its key (mode 0600) as `dir/<stem>.pem` and `dir/<stem>.key`; neither
/// may exist yet.
pub fn write_pair(dir: &Path, stem: &str, issued: &Issued) -> Result<(PathBuf, PathBuf), ControllerError> {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    write_new(&cert, issued.cert_pem.as_bytes())?;
    crate::keys::write_private(&key, issued.key_pem.as_bytes())?;
    Ok((cert, key))
}

/// Writes a file that must not exist yet.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), ControllerError> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            ControllerError::KeyFile {
                path: path.to_path_buf(),
                detail: "the file exists already; it is not replaced (remove it first, or choose another --out)".into(),
            }
        } else {
            ControllerError::Io { action: "create", path: path.to_path_buf(), source }
        }
    })?;
    file.write_all(bytes).map_err(crate::error::io_err("write", path))
}

/// The server files of a data directory's development PKI.
#[derive(Debug, Clone)]
pub struct DevTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// True if they were made just now.
    pub created: bool,
}

/// `data_dir/tls/`: the development CA and a server certificate for `hosts`, made if missing.
pub fn ensure_dev_tls(data_dir: &Path, hosts: &[String]) -> Result<DevTls, ControllerError> {
    let dir = data_dir.join("tls");
    let files =
        DevTls { ca: dir.join(CA_CERT), cert: dir.join(SERVER_CERT), key: dir.join(SERVER_KEY), created: false };
    let present = [&files.ca, &files.cert, &files.key].iter().filter(|p| p.exists()).count();
    if present == 3 {
        return Ok(files);
    }
    if present > 0 || dir.join(CA_KEY).exists() {
        return Err(ControllerError::KeyFile {
            path: dir,
            detail: format!(
                "holds only some of {CA_CERT}, {SERVER_CERT} and {SERVER_KEY}; remove the directory to have a new \
                 development CA made, or set tls_cert and tls_key"
            ),
        });
    }
    std::fs::create_dir_all(&dir).map_err(crate::error::io_err("create", &dir))?;
    let ca = DevCa::generate()?;
    write_pair(&dir, "ca", ca.pem())?;
    write_pair(&dir, "server", &ca.server(hosts)?)?;
    Ok(DevTls { created: true, ..files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_valid_from_last_year_for_a_bounded_number_of_years() {
        let at = |secs: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        // 2026-12-01T00:00:00Z, and the last and first seconds of 2026 (within a day of New Year the year may
        // read one off; last year's start as the beginning still covers now).
        assert_eq!(validity_years(at(1_796_083_200), LEAF_YEARS), (2025, 2029));
        assert_eq!(validity_years(at(1_796_083_200), CA_YEARS), (2025, 2036));
        let (from, _) = validity_years(at(1_767_225_600 + 3_600), LEAF_YEARS);
        assert!(from <= 2025, "{from}");
        let (from, until) = validity_years(at(1_798_761_599), LEAF_YEARS);
        assert!(from <= 2026 && until >= 2029, "{from} {until}");
    }

    #[test]
    fn hosts_start_with_the_loopback_names_and_have_no_repeats() {
        let hosts = server_hosts(&["bindwave.example".into(), "localhost".into(), "0.0.0.0".into(), "[::1]".into()]);
        assert_eq!(&hosts[..3], ["localhost", "127.0.0.1", "::1"]);
        assert!(hosts.contains(&"bindwave.example".to_string()));
        assert_eq!(hosts.iter().filter(|h| *h == "localhost").count(), 1);
        assert!(!hosts.contains(&"0.0.0.0".to_string()));
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://bindwave.example:8443/x").as_deref(), Some("bindwave.example"));
        assert_eq!(url_host("http://[::1]:8080").as_deref(), Some("::1"));
        assert_eq!(url_host("10.0.0.5:1883").as_deref(), Some("10.0.0.5"));
        assert_eq!(url_host("http://").as_deref(), None);
    }

    #[test]
    fn the_data_dir_gets_one_ca_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let made = ensure_dev_tls(dir.path(), &server_hosts(&[])).unwrap();
        assert!(made.created);
        let ca = std::fs::read_to_string(&made.ca).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for key in [&made.key, &dir.path().join("tls").join(CA_KEY)] {
                assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600, "{key:?}");
            }
        }
        let again = ensure_dev_tls(dir.path(), &server_hosts(&[])).unwrap();
        assert!(!again.created);
        assert_eq!(std::fs::read_to_string(&again.ca).unwrap(), ca);
        std::fs::remove_file(&made.cert).unwrap();
        let e = ensure_dev_tls(dir.path(), &[]).unwrap_err().to_string();
        assert!(e.contains("remove the directory"), "{e}");
    }
}
