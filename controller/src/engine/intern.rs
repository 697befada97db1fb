//! What a fleet repeats, kept once: the part numbers, models, agent versions and label sets of a million hellos
//! are a few dozen distinct texts. Each hello the engine keeps shares them instead of holding its own copies.

use std::collections::HashSet;
use std::sync::Arc;

use bindwave_proto::wire::{Hello, Shared};

/// Distinct texts kept, at most: past it a hello keeps its own copies (a fleet whose every phone has its own
/// part number costs what it did before; a device that says hello with a new text every time cannot grow the
/// set without bound).
const MAX_KEPT: usize = 65_536;

#[derive(Debug, Default)]
pub(super) struct Interner {
    texts: HashSet<Shared>,
    label_sets: HashSet<Arc<[Shared]>>,
}

impl Interner {
    /// Makes `hello` share the texts already kept, and keeps its new ones.
    pub(super) fn hello(&mut self, hello: &mut Hello) {
        self.text(&mut hello.part_number);
        self.text(&mut hello.agent_version);
        if let Some(model) = hello.model.as_mut() {
            self.text(model);
        }
        if !hello.labels.is_empty() {
            match self.label_sets.get(&hello.labels) {
                Some(kept) => hello.labels = kept.clone(),
                None if self.label_sets.len() < MAX_KEPT => {
                    let labels: Arc<[Shared]> = hello.labels.iter().map(|l| self.text_of(l)).collect();
                    self.label_sets.insert(labels.clone());
                    hello.labels = labels;
                }
                None => {}
            }
        }
    }

    fn text(&mut self, text: &mut Shared) {
        *text = self.text_of(text);
    }

    fn text_of(&mut self, text: &Shared) -> Shared {
        match self.texts.get(text) {
            Some(kept) => kept.clone(),
            None => {
                if self.texts.len() < MAX_KEPT {
                    self.texts.insert(text.clone());
                }
                text.clone()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::hello;

    /// Two hellos with the same texts share them; a new text is kept for the next.
    #[test]
    fn hellos_share_the_texts_a_fleet_repeats() {
        let mut interner = Interner::default();
        let with = |device: &str, part: &str| {
            let mut h = hello(device, 3, "V3 R1.0.0");
            h.part_number = part.into();
            h.model = Some("CP400".into());
            h.labels = ["site=munich".into(), "pilot".into()].into();
            h
        };
        let (mut a, mut b, mut c) = (with("a", "P1"), with("b", "P1"), with("c", "P2"));
        for h in [&mut a, &mut b, &mut c] {
            interner.hello(h);
        }
        assert!(Arc::ptr_eq(&a.part_number, &b.part_number));
        assert!(Arc::ptr_eq(a.model.as_ref().unwrap(), c.model.as_ref().unwrap()));
        assert!(Arc::ptr_eq(&a.labels, &c.labels));
        assert!(Arc::ptr_eq(&a.agent_version, &c.agent_version));
        assert!(!Arc::ptr_eq(&a.part_number, &c.part_number));
        assert_eq!(&*c.part_number, "P2");
        assert_eq!((a.labels.len(), &*a.labels[1]), (2, "pilot"));
    }
}
