//! `bindwave completions` and `bindwave man`: rendered from the clap definitions of `bindwave` and, with the
//! simulated fleet built in, of `bindwave-agent`, so the phone's binary carries neither. `bindwave openapi`:
//! the HTTP API's description, from the router's own handlers.

use super::Cli;
use crate::ControllerError;

/// `bindwave completions SHELL [--agent]`.
pub(super) fn completions(shell: clap_complete::Shell, agent: bool) -> Result<(), ControllerError> {
    let (mut cmd, name) = match agent {
        #[cfg(feature = "sim")]
        true => (<bindwave_agent::cli::Cli as clap::CommandFactory>::command(), "bindwave-agent"),
        #[cfg(not(feature = "sim"))]
        true => return Err(ControllerError::BadRequest(AGENT_DOCS_NEED_SIM.into())),
        false => (<Cli as clap::CommandFactory>::command(), "bindwave"),
    };
    clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout());
    Ok(())
}

/// The agent's man pages and completions come from its command line, which a build without the simulated
/// fleet does not link.
#[cfg(not(feature = "sim"))]
const AGENT_DOCS_NEED_SIM: &str =
    "this bindwave is built without the simulated fleet (feature `sim`), which carries the agent's command line; \
     use a default build for the agent's completions";

/// `bindwave man DIR`: a page per command and subcommand, for bindwave and (with the simulated fleet built
/// in) bindwave-agent.
pub(super) fn man_pages(dir: &std::path::Path) -> Result<(), ControllerError> {
    std::fs::create_dir_all(dir).map_err(crate::error::io_err("create", dir))?;
    fn write(cmd: clap::Command, name: String, dir: &std::path::Path, n: &mut usize) -> Result<(), ControllerError> {
        let cmd = cmd.name(name.clone());
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut out).map_err(crate::error::io_err("render", &path))?;
        std::fs::write(&path, out).map_err(crate::error::io_err("write", &path))?;
        *n += 1;
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            write(sub.clone(), format!("{name}-{}", sub.get_name()), dir, n)?;
        }
        Ok(())
    }
    let mut n = 0;
    let mut bindwave = <Cli as clap::CommandFactory>::command();
    bindwave.build();
    write(bindwave, "bindwave".into(), dir, &mut n)?;
    #[cfg(feature = "sim")]
    {
        let mut agent = <bindwave_agent::cli::Cli as clap::CommandFactory>::command();
        agent.build();
        write(agent, "bindwave-agent".into(), dir, &mut n)?;
    }
    println!("wrote {n} man pages to {}", dir.display());
    Ok(())
}

/// `bindwave openapi`: the description `/api/v1/openapi.json` serves.
pub(super) fn openapi() -> Result<(), ControllerError> {
    let text = serde_json::to_string_pretty(&crate::api::description()).unwrap_or_default();
    println!("{text}");
    Ok(())
}
