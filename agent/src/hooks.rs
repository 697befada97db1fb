//! The phone's own programs the agent calls: the reboot command, the health check, the update indicator.

use std::time::Duration;

/// Runs `argv` with `env` added, waits at most `timeout`, and says why it failed if it did.
pub async fn run(argv: &[String], env: &[(&str, String)], timeout: Duration) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or_else(|| "the command is empty".to_string())?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).envs(env.iter().map(|(k, v)| (*k, v.as_str()))).kill_on_drop(true);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().map_err(|e| format!("cannot run {program}: {e}"))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(format!("{program} did not finish within {}s", timeout.as_secs())),
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: String = stderr.trim().chars().rev().take(300).collect::<Vec<_>>().into_iter().rev().collect();
            Err(if tail.is_empty() {
                format!("{program} exited with {}", out.status)
            } else {
                format!("{program} exited with {}: {tail}", out.status)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outcomes_of_a_command() {
        let t = Duration::from_secs(5);
        assert!(run(&["true".into()], &[], t).await.is_ok());
        let e = run(&["sh".into(), "-c".into(), "echo broken >&2; exit 3".into()], &[], t).await.unwrap_err();
        assert!(e.contains("exit status: 3") && e.contains("broken"), "{e}");
        let e = run(&["sh".into(), "-c".into(), "test \"$X\" = yes".into()], &[("X", "no".into())], t).await;
        assert!(e.is_err());
        assert!(run(&["sh".into(), "-c".into(), "test \"$X\" = yes".into()], &[("X", "yes".into())], t).await.is_ok());
        let e = run(&["sleep".into(), "5".into()], &[], Duration::from_millis(100)).await.unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
        assert!(run(&["/nonexistent".into()], &[], t).await.unwrap_err().contains("cannot run"));
        assert!(run(&[], &[], t).await.is_err());
    }
}
