//! `bindwave serve`: the controller, until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use bindwave_link::TlsFiles;

use crate::broker::auth::{secret_path, BrokerSecret};
use crate::broker::{BrokerAccess, BrokerConfig, SecureAccess};
use crate::config::ServeSettings;
use crate::service::{BrokerLogin, HttpOptions, MqttMode, ServeOptions, Service};
use crate::ControllerError;

/// Runs the controller with these settings until it is told to stop.
pub(super) async fn run(settings: ServeSettings) -> Result<(), ControllerError> {
    let images = settings.image_policy()?;
    let (mqtt, login) = mqtt_setup(&settings)?;
    crate::raise_open_files_limit();
    let tls = if settings.insecure_lab { None } else { Some(tls_files(&settings)?) };
    let http = HttpOptions {
        insecure_lab: settings.insecure_lab,
        tls,
        max_connections: settings.http_max_connections,
        max_upload_size: settings.max_upload_size,
        header_timeout: std::time::Duration::from_secs(settings.http_header_timeout_secs),
        body_timeout: std::time::Duration::from_secs(settings.http_body_timeout_secs),
    };
    let webhooks = match settings.webhook_urls.is_empty() {
        true => None,
        false => {
            let secret = settings.webhook_secret_file.clone();
            let secret = secret.unwrap_or_else(|| crate::webhooks::Webhooks::secret_path(&settings.data_dir));
            Some(crate::webhooks::Webhooks::load(settings.webhook_urls.clone(), &secret)?)
        }
    };
    let service = Service::start(ServeOptions {
        data_dir: settings.data_dir,
        http_listen: settings.http_listen,
        mqtt,
        public_url: settings.public_url,
        prometheus_url: settings.prometheus_url,
        webhooks,
        images,
        command_ttl: settings.command_ttl,
        login,
        http,
    })
    .await?;
    eprintln!("bindwave controller: HTTP on {}, MQTT on {}", service.http_url, service.mqtt_url);
    if let Some(path) = &service.admin_token_file {
        eprintln!("the first admin token is in {} (the CLI on this machine reads it from there)", path.display());
    }
    service.run_until(shutdown_signal()).await
}

/// The broker (embedded or external) and the controller's login to it, from the settings. Secure unless lab
/// mode is asked for by name: the embedded broker gets its TLS files (a development CA and certificate in
/// `data_dir/tls/` when none are configured) and its password secret (`data_dir/broker.secret`), each made
/// at first start and logged with its path.
fn mqtt_setup(s: &ServeSettings) -> Result<(MqttMode, BrokerLogin), ControllerError> {
    let mut login = BrokerLogin {
        tls: TlsFiles {
            ca_file: s.broker_ca.clone(),
            client_cert: s.broker_client_cert.clone(),
            client_key: s.broker_client_key.clone(),
        },
        username: s.broker_username.clone(),
        password: s.broker_password.clone(),
    };
    if let Some(url) = &s.broker {
        let tls = bindwave_link::BrokerUrl::parse(url)?.tls;
        if !tls && !s.insecure_lab {
            return Err(setting(
                "broker",
                format!("{url} is plain MQTT; use mqtts:// with broker_ca, or set insecure_lab = true for a lab"),
            ));
        }
        if s.insecure_lab {
            warn_lab("the external broker is reached without TLS if its URL is mqtt://");
        }
        if login.username.is_none() && login.tls.client_cert.is_none() && login.password.is_some() {
            login.username = Some(crate::broker::acl::CONTROLLER_IDENTITY.to_string());
        }
        return Ok((MqttMode::External(url.clone()), login));
    }
    let listen = s.mqtt_listen;
    if s.insecure_lab {
        warn_lab("the embedded MQTT broker listens without TLS, lets anonymous clients in and applies no topic rules");
        return Ok((
            MqttMode::Embedded(BrokerConfig { listen, access: BrokerAccess::InsecureLab, ..Default::default() }),
            login,
        ));
    }
    let (cert, key) = match (&s.tls_cert, &s.tls_key) {
        (Some(cert), Some(key)) => {
            if login.tls.ca_file.is_none() {
                return Err(setting(
                    "broker_ca",
                    "with tls_cert, the controller needs the CA that signed it to verify its own broker; set broker_ca"
                        .to_string(),
                ));
            }
            (cert.clone(), key.clone())
        }
        (None, None) => {
            let mut extra: Vec<String> = vec![listen.ip().to_string()];
            extra.extend(s.public_url.as_deref().and_then(crate::certs::url_host));
            let dev = crate::certs::ensure_dev_tls(&s.data_dir, &crate::certs::server_hosts(&extra))?;
            if dev.created {
                tracing::warn!(
                    ca = %dev.ca.display(),
                    cert = %dev.cert.display(),
                    "no tls_cert configured: made a development CA and a server certificate for the MQTT broker; \
                     agents verify the broker with {} (set tls_cert and tls_key for production)",
                    dev.ca.display()
                );
            } else {
                tracing::info!(ca = %dev.ca.display(), cert = %dev.cert.display(), "MQTT over TLS with the development CA");
            }
            login.tls.ca_file.get_or_insert(dev.ca);
            (dev.cert, dev.key)
        }
        _ => return Err(setting("tls_cert", "tls_cert and tls_key go together: set both, or neither".to_string())),
    };
    if s.mqtt_client_ca.is_some() && login.tls.client_cert.is_none() {
        return Err(setting(
            "broker_client_cert",
            "with mqtt_client_ca every client needs a certificate, the controller too: set broker_client_cert and \
             broker_client_key (CN bindwave:controller; `bindwave certs dev` makes controller.pem)"
                .to_string(),
        ));
    }
    std::fs::create_dir_all(&s.data_dir).map_err(crate::error::io_err("create", &s.data_dir))?;
    let path = secret_path(&s.data_dir);
    let (secret, created) = BrokerSecret::load_or_create(&path)?;
    if created {
        tracing::warn!(path = %path.display(), "made the broker secret that MQTT passwords derive from \
            (`bindwave device credentials <id>` prints a device's password)");
    }
    let access = SecureAccess { cert, key, client_ca: s.mqtt_client_ca.clone(), secret, refused: None };
    Ok((
        MqttMode::Embedded(BrokerConfig {
            listen,
            access: BrokerAccess::Secure(Box::new(access)),
            ..Default::default()
        }),
        login,
    ))
}

/// Lab mode is logged loudly, every start.
fn warn_lab(what: &str) {
    tracing::warn!("INSECURE LAB MODE (insecure_lab = true): {what}; never use it for a real fleet");
}

fn setting(key: &'static str, detail: String) -> ControllerError {
    ControllerError::Setting { key, detail }
}

/// The data directory's broker secret (for `bindwave device credentials`).
pub(super) fn load_secret(data_dir: &std::path::Path) -> Result<BrokerSecret, ControllerError> {
    let path: PathBuf = secret_path(data_dir);
    if !path.exists() {
        return Err(ControllerError::KeyFile {
            path,
            detail: "no broker secret here yet (`bindwave serve` makes it at first start; check --data-dir)".into(),
        });
    }
    BrokerSecret::load(&path)
}

/// The HTTPS certificate and key: `tls_cert` and `tls_key`, else the development ones in `<data_dir>/tls/`
/// (made at first start, the same the embedded broker serves).
fn tls_files(settings: &ServeSettings) -> Result<(PathBuf, PathBuf), ControllerError> {
    match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Ok((cert.clone(), key.clone())),
        (None, None) => {
            let mut extra: Vec<String> = vec![settings.http_listen.ip().to_string()];
            extra.extend(settings.public_url.as_deref().and_then(crate::certs::url_host));
            let dev = crate::certs::ensure_dev_tls(&settings.data_dir, &crate::certs::server_hosts(&extra))?;
            Ok((dev.cert, dev.key))
        }
        _ => Err(setting("tls_cert", "tls_cert and tls_key go together: set both, or neither".to_string())),
    }
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
