//! A broker left open: it takes TLS but no login and has no ACL, so anyone who reaches it may publish on any
//! topic, as on a misconfigured external broker. The tests that forge commands and reports need one; phones
//! that are not lab phones talk to it over TLS, as they must.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::{dev_tls, free_port, Mosquitto};

/// Mosquitto with TLS (a test CA's certificate) and `allow_anonymous`, no ACL.
pub struct OpenBroker {
    pub broker: Mosquitto,
    /// `mqtts://127.0.0.1:PORT`.
    pub url: String,
    /// The CA the broker's certificate chains to.
    pub ca: PathBuf,
}

impl OpenBroker {
    pub fn start(dir: &Path) -> OpenBroker {
        let tls = dir.join("open-broker-tls");
        dev_tls(&tls);
        let file = |name: &str| tls.join(name).display().to_string();
        for _ in 0..4 {
            let port = free_port();
            // Run as the user who owns the test's private key (mode 0600).
            let conf = format!(
                "user {}\nlistener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nallow_anonymous true\n\
                 persistence false\nmax_queued_messages 100000\nmax_inflight_messages 1000\n",
                std::env::var("USER").unwrap_or_else(|_| "root".into()),
                file("ca.pem"),
                file("server.pem"),
                file("server.key")
            );
            if let Some(broker) = Mosquitto::try_start_conf(dir, port, &conf, "mqtts") {
                let url = broker.url.clone();
                return OpenBroker { broker, url, ca: tls.join("ca.pem") };
            }
        }
        panic!("mosquitto did not start with TLS");
    }

    /// The `[broker]` keys (beside `url`) a phone needs here: the CA, and no login.
    pub fn phone_login(&self) -> String {
        format!("ca_file = {:?}\n", self.ca.display().to_string())
    }

    /// The `bindwave serve` flags for a controller on this broker (with `start_secure`).
    pub fn serve_args(&self) -> [String; 4] {
        ["--broker".into(), self.url.clone(), "--broker-ca".into(), self.ca.display().to_string()]
    }

    /// Publishes `payload` to `topic` as an anonymous client with no business there, and waits for the broker to
    /// take it.
    pub fn publish_as_stranger(&self, topic: &str, payload: &[u8]) {
        use rumqttc::{MqttOptions, TlsConfiguration, Transport};
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let (host, port) = self.url.trim_start_matches("mqtts://").rsplit_once(':').expect("host:port");
        // A client id of its own each time: the broker may still be closing the previous session under the same
        // id.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut o = MqttOptions::new(format!("stranger-{n}"), host, port.parse().expect("port"));
        o.set_keep_alive(Duration::from_secs(5));
        // rumqttc's own default (10 KiB) would stop an oversized payload before the broker sees it.
        o.set_max_packet_size(256 * 1024, 256 * 1024);
        let tls = bindwave_link::TlsFiles { ca_file: Some(self.ca.clone()), ..Default::default() };
        let config = tls.client_config().expect("a TLS client config from the test CA");
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(config))));
        crate::publish_once(o, topic, payload);
    }
}
