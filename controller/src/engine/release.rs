//! Which images the engine rolls out: those a trusted release key verified when they were added (the key
//! is in the image's record), unless the service allows unsigned images, a lab setting.

use std::collections::BTreeSet;

use bindwave_proto::KeyId;

use super::EngineError;
use crate::model::Image;

/// The release keys trusted now, by id, and whether images no trusted key verified may still be rolled out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasePolicy {
    pub trusted: BTreeSet<KeyId>,
    pub allow_unsigned: bool,
}

impl Default for ReleasePolicy {
    /// The engine's own default, for its tests: any image. `bindwave serve` always sets the policy from its
    /// settings, whose default is to require a trusted signature.
    fn default() -> Self {
        ReleasePolicy { trusted: BTreeSet::new(), allow_unsigned: true }
    }
}

impl ReleasePolicy {
    /// Whether `image` may be rolled out.
    pub fn check(&self, image: &Image) -> Result<(), EngineError> {
        let why = match image.signed_by {
            Some(key) if self.trusted.contains(&key) => return Ok(()),
            _ if self.allow_unsigned => return Ok(()),
            Some(key) => format!("it was signed by release key {key}, which is no longer in `release_keys`"),
            None => "no trusted release key verified it when it was added".to_string(),
        };
        Err(EngineError::UntrustedImage { image: image.sha256.to_string(), why })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::{fleet, image, spec};
    use crate::engine::Input;
    use crate::model::Gates;

    #[test]
    fn only_images_verified_by_a_key_trusted_now_are_rolled_out() {
        let (a, b) = (KeyId([1; 8]), KeyId([2; 8]));
        let strict = ReleasePolicy { trusted: [a].into(), allow_unsigned: false };
        let signed = |key| Image { signed_by: key, ..image() };
        assert_eq!(strict.check(&signed(Some(a))), Ok(()));
        let e = strict.check(&signed(Some(b))).unwrap_err().to_string();
        assert!(e.contains("0202020202020202, which is no longer in `release_keys`"), "{e}");
        let e = strict.check(&signed(None)).unwrap_err().to_string();
        assert!(e.contains("no trusted release key verified it") && e.contains("bindwave image sign"), "{e}");
        let lab = ReleasePolicy { allow_unsigned: true, ..strict };
        assert_eq!(lab.check(&signed(None)), Ok(()));
    }

    #[test]
    fn a_rollout_of_an_image_no_trusted_key_verified_is_neither_planned_nor_created() {
        let key = KeyId([7; 8]);
        let strict = ReleasePolicy { trusted: [key].into(), allow_unsigned: false };
        let mut e = fleet(3).with_release_policy(strict);
        let s = spec(&["100%"], Gates::default());
        assert!(matches!(e.plan(&s, 0), Err(EngineError::UntrustedImage { .. })));
        let created = e.handle(Input::CreateRollout { spec: Box::new(s.clone()), seed: 0, actor: "alice".into() }, 1);
        assert!(matches!(created, Err(EngineError::UntrustedImage { .. })));
        assert_eq!(e.rollouts().count(), 0);
        // Added again, verified by the trusted key this time: it rolls out.
        e.handle(Input::AddImage(Image { signed_by: Some(key), ..image() }), 2).unwrap();
        assert!(e.plan(&s, 0).is_ok());
    }
}
