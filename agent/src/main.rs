use std::process::ExitCode;

use bindwave_agent::cli::{
    Cli, Command, ConfigArgs, ConfigCommand, LogArgs, LogFormat, Output, ShowFormat, EXIT_ERROR, EXIT_INVALID,
};
use bindwave_agent::config::{Check, Checked};
use bindwave_agent::{Agent, AgentConfig};
use clap::Parser;

fn main() -> ExitCode {
    // The agent's TLS (https, ftps) uses ring: smaller than aws-lc-rs on the phone.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    init_tracing(&cli.log);
    let format = cli.log.log_format;
    match try_main(cli) {
        Ok(code) => code,
        Err(e) => {
            let message = bindwave_agent::error_chain(e.as_ref());
            match format {
                LogFormat::Text => eprintln!("error: {message}"),
                LogFormat::Json => tracing::error!(exit_code = EXIT_ERROR, "{message}"),
            }
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Logs to stderr, as text or JSON lines; the filter from --log-level, else RUST_LOG, else info.
fn init_tracing(log: &LogArgs) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // --log-level was checked by its parser (cli::parse_log_level); RUST_LOG is checked here.
    let filter = match (&log.log_level, std::env::var("RUST_LOG")) {
        (Some(level), _) => bindwave_settings::log_filter(level).ok(),
        (None, Ok(env)) if !env.trim().is_empty() => {
            bindwave_settings::log_filter(&env).map_err(|e| eprintln!("warning: RUST_LOG: {e}; logging at info")).ok()
        }
        _ => None,
    }
    .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let builder = tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(std::io::stderr);
    let _ = match log.log_format {
        LogFormat::Text => {
            builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).finish().with(filter).try_init()
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .with(filter)
            .try_init(),
    };
}

fn try_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => {
            let Checked { config, identity } = load(&args.config)?;
            tracing::info!(device = %config.device_id, broker = %config.broker.url,
                config = %args.config.config.display(), version = bindwave_agent::AGENT_VERSION, "starting");
            let agent = Agent::new(config, identity)?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(agent.run(shutdown_signal()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => {
            let Checked { config, identity } = load(&args.config)?;
            let status = bindwave_agent::status::read(&config, &identity)?;
            if args.json || args.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status.text());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check(args)) => {
            let check = check(&args.config)?;
            match args.output {
                Output::Text => print!("{}", check.text()),
                Output::Json => println!("{}", serde_json::to_string_pretty(&check.report())?),
            }
            Ok(verdict(&check))
        }
        Command::Config(ConfigCommand::Show(args)) => {
            let check = check(&args.config)?;
            let Some(config) = check.config.as_ref().filter(|_| check.is_valid()) else {
                eprint!("{}", check.text());
                return Ok(verdict(&check));
            };
            let effective = config.effective(args.show_secrets);
            match args.output {
                ShowFormat::Toml => print!("{}", toml::to_string(&effective)?),
                ShowFormat::Json => println!("{}", serde_json::to_string_pretty(&effective)?),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The checked config and the identity it resolved (the hardware probe runs here, once).
fn load(args: &ConfigArgs) -> Result<Checked, bindwave_agent::AgentError> {
    AgentConfig::load_checked(&args.config, &args.overrides())
}

fn check(args: &ConfigArgs) -> Result<Check, bindwave_agent::AgentError> {
    bindwave_agent::config::check(&args.config, &args.overrides())
}

fn verdict(check: &Check) -> ExitCode {
    if check.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
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
