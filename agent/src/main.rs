use std::path::PathBuf;
use std::process::ExitCode;

use bindwave_agent::{Agent, AgentConfig};
use clap::{Parser, Subcommand};

/// The Bindwave agent: takes firmware updates for this phone over MQTT.
#[derive(Parser)]
#[command(name = "bindwave-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Connect to the broker and take update commands until stopped (SIGINT/SIGTERM).
    ///
    /// Example: bindwave-agent run --config /etc/bindwave/agent.toml
    Run {
        /// The agent's TOML config.
        #[arg(long, short, env = "BINDWAVE_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// What this phone runs and is doing, for a technician: level, version, slot, the job in hand, the last
    /// outcome.
    ///
    /// Example: bindwave-agent status --config /etc/bindwave/agent.toml
    Status {
        #[arg(long, short, env = "BINDWAVE_AGENT_CONFIG")]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // The agent's TLS (https, ftps) uses ring: smaller than aws-lc-rs on the phone.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", bindwave_agent::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn try_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Status { config, json } => {
            let config = AgentConfig::load(&config)?;
            let status = bindwave_agent::status::read(&config)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status.text());
            }
            Ok(())
        }
        Cmd::Run { config } => {
            let config = AgentConfig::load(&config)?;
            let agent = Agent::new(config)?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(agent.run(shutdown_signal()))?;
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
