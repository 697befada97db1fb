//! Where a download is kept on the phone: the partial file, its validator, and deleting both.
//!
//! The small file operations of a download (opening it, the validator, deleting both) are plain system calls
//! made on the agent's own thread: each is one quick call on local storage, and a trip through tokio's blocking
//! pool for it cost more than the call (a thread wake-up each way; a simulated fleet made dozens a phone). What
//! can take long (writing and syncing the bind, reading a partial one back) stays on tokio's file type.

use std::path::{Path, PathBuf};

/// The partial download and its validator, for a job.
pub(crate) fn download_path(dir: &Path, job_id: &str) -> PathBuf {
    dir.join(format!("{}.bind", file_safe(job_id)))
}

pub(super) fn validator_path(file: &Path) -> PathBuf {
    file.with_extension("validator")
}

/// Deletes a download and its validator.
pub(crate) fn remove(file: &Path) {
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(validator_path(file));
}

/// Job ids come from the wire: keep only characters that are safe in a file name.
fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .take(100)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_id_from_the_wire_makes_a_safe_file_name() {
        let dir = Path::new("/state/downloads");
        assert_eq!(download_path(dir, "r12-phone-1"), dir.join("r12-phone-1.bind"));
        assert_eq!(download_path(dir, "../../etc/passwd"), dir.join(".._.._etc_passwd.bind"));
        assert_eq!(download_path(dir, "a/b c"), dir.join("a_b_c.bind"));
        assert_eq!(file_safe(&"x".repeat(500)).len(), 100);
        assert_eq!(validator_path(&download_path(dir, "j")), dir.join("j.validator"));
    }
}
