//! SHA-256, with ring: its assembly (SHA extensions, AVX, NEON) runs at full speed whatever the build's opt level.
//! sha2's SHA-extension code relies on its helpers being inlined, and under the agent's size-optimised profile
//! (`opt-level = "s"`) they are not: a 1 GiB bind hashed with it took over 10 s on this workspace's machines.

/// A SHA-256 in progress, fed in chunks of any size.
#[derive(Clone)]
pub struct Sha256(ring::digest::Context);

impl Sha256 {
    pub fn new() -> Self {
        Sha256(ring::digest::Context::new(&ring::digest::SHA256))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

/// The SHA-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digests() {
        assert_eq!(hex::encode(super::digest(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let mut h = super::Sha256::new();
        for part in [&b"ab"[..], b"", b"c"] {
            h.update(part);
        }
        assert_eq!(hex::encode(h.finish()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
