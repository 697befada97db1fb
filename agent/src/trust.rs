//! The release keys a phone pins, and the one decision about a bind's signature. It is made on the header
//! alone, as soon as the header has arrived: before the compatibility rule, and before any payload byte is
//! downloaded, so a bind that is not signed by a pinned key costs the phone one header's worth of bytes.

use bindwave_proto::wire::Reason;
use bindwave_proto::{BindHeader, KeyId, TrustedKeys, Untrusted};

/// The release keys this phone pins (from `[trust] keys` and `key_files`), and whether it is a lab phone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseTrust {
    keys: TrustedKeys,
    insecure_lab: bool,
}

impl ReleaseTrust {
    pub fn new(keys: TrustedKeys, insecure_lab: bool) -> ReleaseTrust {
        ReleaseTrust { keys, insecure_lab }
    }

    pub fn keys(&self) -> &TrustedKeys {
        &self.keys
    }

    /// A lab phone accepts unsigned binds.
    pub fn insecure_lab(&self) -> bool {
        self.insecure_lab
    }

    /// Whether a bind may be installed, from its header: the key that signed it, or `None` for an unsigned
    /// bind on a lab phone. Otherwise the reason it is rejected: `unsigned`, `untrusted_key` or
    /// `signature_invalid`. A signed bind is checked on a lab phone too: a bad signature is never accepted.
    pub fn judge(&self, header: &BindHeader) -> Result<Option<KeyId>, Reason> {
        match header.verify_signature(&self.keys) {
            Ok(signer) => Ok(Some(signer)),
            Err(Untrusted::Unsigned) if self.insecure_lab => Ok(None),
            Err(untrusted) => Err(untrusted.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use bindwave_proto::bind::{parse_header, Parsed};
    use bindwave_proto::{PublicKey, Signature};
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    use super::*;

    fn key_pair() -> (Ed25519KeyPair, PublicKey) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public = PublicKey(pair.public_key().as_ref().try_into().unwrap());
        (pair, public)
    }

    fn unsigned() -> BindHeader {
        BindHeader::new("V3 R3.18.0".parse().unwrap(), None, 5, [7; 32])
    }

    fn signed_by(pair: &Ed25519KeyPair, public: PublicKey) -> BindHeader {
        let header = unsigned();
        // The message of a header about to be signed: what `encode` writes once the signature is added.
        let message = header.signed_message().unwrap();
        let bytes: [u8; 64] = pair.sign(&message).as_ref().try_into().unwrap();
        header.signed(Signature { key_id: public.key_id(), bytes }).unwrap()
    }

    /// The header as a phone reads it off the wire.
    fn read(bytes: &[u8]) -> BindHeader {
        match parse_header(bytes).unwrap() {
            Parsed::Complete { header, .. } => header,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_phone_with_pinned_keys_takes_only_binds_signed_by_one_of_them() {
        let (pair, public) = key_pair();
        let (other_pair, other) = key_pair();
        let (_, second) = key_pair();
        let trust = ReleaseTrust::new(TrustedKeys::new([second, public]), false);
        let good = signed_by(&pair, public).encode().unwrap();
        assert_eq!(trust.judge(&read(&good)), Ok(Some(public.key_id())));
        assert_eq!(trust.judge(&unsigned()), Err(Reason::Unsigned));
        let stranger = signed_by(&other_pair, other).encode().unwrap();
        assert_eq!(trust.judge(&read(&stranger)), Err(Reason::UntrustedKey { key_id: other.key_id() }));
        // One flipped bit in the version's text: the header still parses, the signature fails.
        let mut altered = good.clone();
        let at = altered.windows(4).position(|w| w == b"3.18").unwrap();
        altered[at] = b'4';
        assert_eq!(trust.judge(&read(&altered)), Err(Reason::SignatureInvalid { key_id: public.key_id() }));
    }

    #[test]
    fn a_lab_phone_takes_unsigned_binds_but_never_a_bad_signature() {
        let (pair, public) = key_pair();
        let lab = ReleaseTrust::new(TrustedKeys::new([public]), true);
        assert_eq!(lab.judge(&unsigned()), Ok(None));
        let mut altered = signed_by(&pair, public).encode().unwrap();
        let at = altered.windows(4).position(|w| w == b"3.18").unwrap();
        altered[at] = b'4';
        assert_eq!(lab.judge(&read(&altered)), Err(Reason::SignatureInvalid { key_id: public.key_id() }));
        let no_keys = ReleaseTrust::new(TrustedKeys::default(), true);
        let signed = signed_by(&pair, public).encode().unwrap();
        assert_eq!(no_keys.judge(&read(&signed)), Err(Reason::UntrustedKey { key_id: public.key_id() }));
    }
}
