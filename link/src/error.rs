//! What can go wrong on the link, and how both sides print an error with its causes.

/// The link's own errors. A broker that cannot be reached is not one: it is retried, and reported as
/// [`crate::LinkEvent::Disconnected`].
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("invalid broker url {url:?}: {reason} (expected mqtt://host:port or mqtts://host:port)")]
    BrokerUrl { url: String, reason: String },
    #[error("a broker password is set without a username: MQTT sends a password only with a username; set both")]
    PasswordWithoutUsername,
    #[error("the broker url {url:?} is mqtts:// but no CA file is set to verify the broker with (set the CA file)")]
    TlsWithoutCa { url: String },
    #[error("TLS files are set but the broker url {url:?} is plain mqtt:// (use mqtts://host:port)")]
    TlsFilesWithPlainUrl { url: String },
    #[error("a client certificate needs its private key, and a key its certificate: set both or neither")]
    ClientCertWithoutKey,
    #[error("cannot read the {what} {path}")]
    TlsFile {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the {what} {path} holds no certificate (a PEM file with -----BEGIN CERTIFICATE----- is expected)")]
    NoCertificate { what: &'static str, path: std::path::PathBuf },
    #[error("the {what} {path} cannot be used")]
    TlsConfig {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error(
        "no TLS crypto provider is installed in this process \
         (call rustls::crypto::<provider>::default_provider().install_default() at start)"
    )]
    NoCryptoProvider,
}

/// An error and its causes on one line, each cause once: a client library's top-level message alone rarely
/// says what went wrong, and some repeat their cause in their own message.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot fetch: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot fetch")]
    struct Wraps(#[source] std::io::Error);

    #[test]
    fn each_cause_is_said_once() {
        let io = || std::io::Error::other("connection refused");
        assert_eq!(chain(&Wraps(io())), "cannot fetch: connection refused");
        assert_eq!(chain(&Repeats(io())), "cannot fetch: connection refused");
    }
}
