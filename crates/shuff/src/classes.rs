//! Which class a tensor belongs to: one policy for everything that assigns tensors to classes
//! (`train`, `eval`, `compress`, …), so that a set with overlapping selectors behaves the same
//! everywhere. A tensor goes to the **first** class, in the set's class order, whose selector (a
//! regex over tensor names; empty: every tensor) matches its name. The class order is the order
//! the classes were given when the set was trained (`Provenance::order`), kept in the set's file;
//! sets without it (older files) order their classes by name.

use crate::set::CodebookSet;
use regex::Regex;

/// A selector that is not a valid regex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("class `{class}`: selector `{selector}` is not a valid regex: {reason}")]
pub struct BadSelector {
    /// The class.
    pub class: String,
    /// Its selector.
    pub selector: String,
    /// What the regex parser said.
    pub reason: String,
}

/// Ordered (class, selector) rules; see the module docs.
#[derive(Clone, Debug)]
pub struct ClassSelector {
    rules: Vec<(String, Option<Regex>)>,
}

impl ClassSelector {
    /// Rules in priority order; an empty selector string matches every tensor.
    pub fn new<S: AsRef<str>>(rules: &[(S, S)]) -> Result<Self, BadSelector> {
        let rules = rules
            .iter()
            .map(|(class, sel)| {
                let (class, sel) = (class.as_ref(), sel.as_ref());
                let re = (!sel.is_empty())
                    .then(|| Regex::new(sel))
                    .transpose()
                    .map_err(|e| BadSelector { class: class.into(), selector: sel.into(), reason: e.to_string() })?;
                Ok((class.to_string(), re))
            })
            .collect::<Result<_, _>>()?;
        Ok(ClassSelector { rules })
    }

    /// The rules a codebook set carries (each class's `Provenance::selector`), in the set's class
    /// order ([`CodebookSet::selection_order`]).
    pub fn from_set(set: &CodebookSet) -> Result<Self, BadSelector> {
        let rules: Vec<(&str, &str)> = set.selection_order().into_iter().map(|(name, c)| (name, c.provenance.selector.as_str())).collect();
        ClassSelector::new(&rules)
    }

    /// The class of the tensor called `name`, if any rule selects it.
    pub fn class_of(&self, name: &str) -> Option<&str> {
        self.class_where(name, |_| true)
    }

    /// The first class that selects `name` and that `accept` takes (e.g. one whose codebook codes
    /// the tensor's dtype).
    pub fn class_where(&self, name: &str, accept: impl Fn(&str) -> bool) -> Option<&str> {
        self.rules
            .iter()
            .find(|(class, re)| re.as_ref().is_none_or(|re| re.is_match(name)) && accept(class))
            .map(|(class, _)| class.as_str())
    }

    /// The rules, in priority order: class name and selector (`None`: every tensor).
    pub fn rules(&self) -> &[(String, Option<Regex>)] {
        &self.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set::Provenance;
    use crate::{Codebook, DType, Layout};

    /// The class-order bug: a catch-all class that sorts first by name must not capture the
    /// tensors of a more specific class given before it — in the set as trained and after a round
    /// trip through its JSON file.
    #[test]
    fn overlapping_selectors_follow_the_order_given_everywhere() {
        let mut set = CodebookSet::new("order");
        for (order, (class, sel)) in [("z_ffn1", r"ffn1_act\.x"), ("a_all", ".")].into_iter().enumerate() {
            let prov = Provenance { selector: sel.into(), order: order as u32, ..Default::default() };
            set.insert(class, Codebook::flat(DType::Bf16, Layout::Bytes), prov);
        }
        for s in [set.clone(), CodebookSet::from_json(&set.to_json()).unwrap()] {
            let sel = ClassSelector::from_set(&s).unwrap();
            assert_eq!(sel.class_of("layer1.ffn1_act.x.shard0"), Some("z_ffn1"));
            assert_eq!(sel.class_of("layer1.weight.ffn1.shard0"), Some("a_all"));
            assert_eq!(sel.class_where("layer1.ffn1_act.x.shard0", |c| c != "z_ffn1"), Some("a_all"));
        }
        // Without an order (older files, sets built elsewhere): by name.
        let mut unordered = CodebookSet::new("by-name");
        for (class, sel) in [("z_ffn1", r"ffn1_act\.x"), ("a_all", ".")] {
            unordered.insert(class, Codebook::flat(DType::Bf16, Layout::Bytes), Provenance { selector: sel.into(), ..Default::default() });
        }
        assert_eq!(ClassSelector::from_set(&unordered).unwrap().class_of("layer1.ffn1_act.x.shard0"), Some("a_all"));
    }

    #[test]
    fn a_bad_selector_names_its_class() {
        let err = ClassSelector::new(&[("c", "(")]).unwrap_err();
        assert_eq!(err.class, "c");
        assert!(err.to_string().contains("not a valid regex"), "{err}");
    }
}
