use std::process::ExitCode;

use bindwave_controller::cli::{self, Cli};
use bindwave_controller::config::LogFormat;
use clap::Parser;

/// jemalloc, not the platform's malloc: the service's threads allocate and free small buffers for every
/// message, connection and record, and glibc's malloc took 15 % of the controller's CPU on a rollout, jemalloc
/// 7 % (BENCHMARKS.md, "Results"). Its purging threads hand freed memory back to the system.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // rustls: reqwest uses aws-lc-rs while the broker pulls in ring; pick one for the whole process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    if !cli.command.runs_until_stopped() {
        // A closed pipe (`bindwave rollout status r1 | head`) ends a reading command quietly, as in any Unix tool.
        #[cfg(unix)]
        // SAFETY: setting a signal disposition to its default before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // Logs: the flag, else RUST_LOG, else the service's settings (environment, config file), else a default.
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (mut level, mut format) = (cli.log_level.clone(), cli.log_format);
    if let cli::Command::Serve(args) = &cli.command {
        match args.settings(cli.log_level.clone(), cli.log_format) {
            Ok(s) => {
                let from_settings = s.sources.get("log_level") != Some(&bindwave_controller::config::Source::Default);
                if level.is_none() && (from_settings || env("RUST_LOG").is_none()) {
                    level = Some(format!("{},rmqtt=warn,rmqtt_net=warn,rmqtt_retainer=warn", s.log_level));
                }
                format = Some(s.log_format);
            }
            Err(e) => {
                eprintln!("error: {}", bindwave_controller::error_chain(&e));
                return ExitCode::from(cli::exit::USAGE);
            }
        }
    }
    let filter = level
        .or_else(|| env("RUST_LOG"))
        .or_else(|| env("BINDWAVE_LOG_LEVEL"))
        .unwrap_or_else(|| "warn,rmqtt=error,rmqtt_net=error,rmqtt_retainer=error".into());
    let filter = bindwave_settings::log_filter(&filter).unwrap_or_else(|e| {
        eprintln!("warning: {e}; logging warnings only");
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::WARN)
    });
    let format = format.or_else(|| match env("BINDWAVE_LOG_FORMAT").as_deref() {
        Some("json") => Some(LogFormat::Json),
        _ => None,
    });
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let logs = tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(std::io::stderr);
    if format == Some(LogFormat::Json) {
        logs.json().with_current_span(true).with_span_list(false).finish().with(filter).init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).finish().with(filter).init();
    }
    // The runtime's threads hold the sockets: a controller that answers an upload early (401, 403, 413) and
    // closes must give the CLI a write error there, not a SIGPIPE that ends it without a word.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().on_thread_start(block_sigpipe).build()
    {
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
            ExitCode::from(cli::exit_code(&e))
        }
    }
}

/// Blocks SIGPIPE on the calling thread: a write to a closed socket there fails with EPIPE instead. The main
/// thread, which prints, keeps the default, so `bindwave rollout list | head` ends quietly.
fn block_sigpipe() {
    #[cfg(unix)]
    // SAFETY: a signal set on the stack, initialized by sigemptyset before use; changes this thread's mask only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
