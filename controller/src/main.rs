use std::process::ExitCode;

use bindwave_controller::cli::{self, Cli, EXIT_UNREACHABLE};
use bindwave_controller::ControllerError;
use clap::Parser;

fn main() -> ExitCode {
    // rustls: reqwest uses aws-lc-rs while the broker pulls in ring; pick one for the whole process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    if !matches!(cli.command, cli::Command::Serve(_) | cli::Command::Simulate { .. } | cli::Command::Demo(_)) {
        // A closed pipe (`bindwave rollout status r1 | head`) ends a reading command quietly, as in any Unix tool.
        #[cfg(unix)]
        // SAFETY: setting a signal disposition to its default before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let default_level = match cli.command {
        cli::Command::Serve(_) => "info,rmqtt=warn,rmqtt_net=warn,rmqtt_retainer=warn",
        _ => "warn,rmqtt=error,rmqtt_net=error,rmqtt_retainer=error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", bindwave_controller::error_chain(&e));
            match e {
                ControllerError::Unreachable { .. } => ExitCode::from(EXIT_UNREACHABLE),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
