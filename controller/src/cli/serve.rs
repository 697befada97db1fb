//! `bindwave serve`: the controller, until Ctrl-C or SIGTERM.

use crate::broker::BrokerConfig;
use crate::service::{MqttMode, ServeOptions, Service};
use crate::ControllerError;

/// Runs the controller with these settings until it is told to stop.
pub(super) async fn run(settings: crate::config::ServeSettings) -> Result<(), ControllerError> {
    let images = settings.image_policy()?;
    let mqtt = match settings.broker {
        Some(url) => MqttMode::External(url),
        None => MqttMode::Embedded(BrokerConfig { listen: settings.mqtt_listen, ..BrokerConfig::default() }),
    };
    crate::raise_open_files_limit();
    let service = Service::start(ServeOptions {
        data_dir: settings.data_dir,
        http_listen: settings.http_listen,
        mqtt,
        public_url: settings.public_url,
        images,
        command_ttl: settings.command_ttl,
    })
    .await?;
    eprintln!("bindwave controller: HTTP on http://{}, MQTT on {}", service.http_addr, service.mqtt_url);
    service.run_until(shutdown_signal()).await
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
