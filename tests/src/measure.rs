//! What the benchmarks read off a process and feed it: `/proc` figures, and payloads that do not compress.

/// A `/proc/PID/status` memory field (`VmRSS:`, `VmHWM:`), in KiB; 0 when the process or the field is gone.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `len` bytes of xorshift noise, the same on every run: a payload no link or disk can compress away.
pub fn noise(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    bytes
}
