//! `bindwave serve`: the controller, until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use crate::broker::BrokerConfig;
use crate::service::{HttpOptions, MqttMode, ServeOptions, Service};
use crate::ControllerError;

/// Runs the controller with these settings until it is told to stop.
pub(super) async fn run(settings: crate::config::ServeSettings) -> Result<(), ControllerError> {
    let mqtt = match settings.broker.clone() {
        Some(url) => MqttMode::External(url),
        None => MqttMode::Embedded(BrokerConfig { listen: settings.mqtt_listen, ..BrokerConfig::default() }),
    };
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
    let service = Service::start(ServeOptions {
        data_dir: settings.data_dir,
        http_listen: settings.http_listen,
        mqtt,
        public_url: settings.public_url,
        http,
    })
    .await?;
    eprintln!("bindwave controller: HTTP on {}, MQTT on {}", service.http_url, service.mqtt_url);
    if let Some(path) = &service.admin_token_file {
        eprintln!("the first admin token is in {} (the CLI on this machine reads it from there)", path.display());
    }
    service.run_until(shutdown_signal()).await
}

/// The HTTPS certificate and key: `tls_cert` and `tls_key`, else the development ones in `<data_dir>/tls/`.
fn tls_files(settings: &crate::config::ServeSettings) -> Result<(PathBuf, PathBuf), ControllerError> {
    let dev = settings.data_dir.join("tls");
    let cert = settings.tls_cert.clone().unwrap_or_else(|| dev.join("server.pem"));
    let key = settings.tls_key.clone().unwrap_or_else(|| dev.join("server.key"));
    for path in [&cert, &key] {
        if !path.exists() {
            return Err(ControllerError::Tls {
                detail: format!(
                    "{} does not exist: the HTTP API is HTTPS; set tls_cert and tls_key to a certificate and its key \
                     (PEM), or start with --insecure-lab for a lab without TLS and tokens",
                    path.display()
                ),
            });
        }
    }
    Ok((cert, key))
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
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
