//! The floor's broker for the embedded case: the controller's own broker (`bindwave_controller::broker`),
//! configured as `bindwave serve --insecure-lab` configures it, alone in a process of its own, so the floor
//! goes through the same broker code and limits as the rollout with no controller logic beside it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use bindwave_controller::broker::{BrokerAccess, BrokerConfig, EmbeddedBroker};
use bindwave_tests::Proc;

use super::procs;

/// `bench-fleet broker`: runs the broker until killed.
pub fn serve(listen: SocketAddr) -> Result<()> {
    bindwave_controller::raise_open_files_limit();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start a tokio runtime")?;
    rt.block_on(async {
        let config = BrokerConfig { listen, access: BrokerAccess::InsecureLab, ..Default::default() };
        let broker = EmbeddedBroker::start(config).await?;
        println!("MQTT on mqtt://{}", broker.local_addr());
        std::future::pending::<()>().await;
        Ok(())
    })
}

/// The broker alone, in its own process.
pub struct BrokerProc {
    pub proc: Proc,
    /// `mqtt://127.0.0.1:PORT`.
    pub url: String,
    dir: std::path::PathBuf,
}

impl BrokerProc {
    /// Starts on `listen` (port 0: a free one).
    pub fn start(dir: &Path, listen: &str) -> Result<BrokerProc> {
        let mut cmd = Command::new(std::env::current_exe().context("find the bench's own executable")?);
        cmd.args(["broker", "--listen", listen]);
        let mut proc = procs::spawn("broker", cmd, dir)?;
        let url = procs::wait_for_line(&mut proc, Duration::from_secs(30), "where it listens", |l| {
            l.strip_prefix("MQTT on ").map(|u| u.trim().to_string())
        })?;
        Ok(BrokerProc { proc, url, dir: dir.to_path_buf() })
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Kills the broker: every client loses its connection.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts it again on the same port.
    pub fn start_again(&mut self) -> Result<()> {
        let listen = self.url.trim_start_matches("mqtt://").to_string();
        let _ = std::fs::rename(self.dir.join("broker.log"), self.dir.join("broker.before-restart.log"));
        *self = Self::start(&self.dir.clone(), &listen)?;
        Ok(())
    }
}
