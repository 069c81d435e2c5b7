//! Provider error codes → the engine's error classes, as one table that is both the code and
//! the documentation.
//!
//! Each adapter keeps a `const` slice of [`ErrorRule`]s written from its provider's documented
//! error codes, looks codes up in it, and checks in a test (with [`undocumented`]) that its
//! `docs.md` shows every row, so the docs cannot drift from the code.

use cascade_engine::ErrorClass;

/// One provider error code and what it means for a cascade.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ErrorRule {
    /// The provider's code, as text.
    pub code: &'static str,
    /// The class the engine acts on.
    pub class: ErrorClass,
    /// What the provider means by it, in a few words.
    pub meaning: &'static str,
}

impl ErrorRule {
    /// A rule.
    pub const fn new(code: &'static str, class: ErrorClass, meaning: &'static str) -> Self {
        Self { code, class, meaning }
    }
}

/// The rule for `code`, if the table has one.
pub fn lookup<'a>(rules: &'a [ErrorRule], code: &str) -> Option<&'a ErrorRule> {
    rules.iter().find(|r| r.code == code)
}

/// One markdown table row for a rule: `| code | class | meaning |`.
pub fn row(rule: &ErrorRule) -> String {
    format!("| {} | `{}` | {} |", rule.code, rule.class.as_str(), rule.meaning)
}

/// The whole table in markdown, with its header.
pub fn markdown(rules: &[ErrorRule]) -> String {
    let mut out = String::from("| code | class | meaning |\n| --- | --- | --- |\n");
    for r in rules {
        out.push_str(&row(r));
        out.push('\n');
    }
    out
}

/// The rows of `rules` that `docs` does not show (empty when the docs are up to date).
pub fn undocumented(docs: &str, rules: &[ErrorRule]) -> Vec<String> {
    rules.iter().map(row).filter(|r| !docs.lines().any(|l| l.trim() == r)).collect()
}

/// Panics, listing them, if `docs` lacks rows of `rules`: the test every adapter runs on its
/// `docs.md`.
pub fn assert_documented(docs: &str, rules: &[ErrorRule]) {
    let missing = undocumented(docs, rules);
    assert!(missing.is_empty(), "docs.md lacks these rows:\n{}", missing.join("\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &[ErrorRule] =
        &[ErrorRule::new("1", ErrorClass::Unreachable, "gone"), ErrorRule::new("2", ErrorClass::Transient, "busy")];

    #[test]
    fn docs_drift_is_caught() {
        let docs = markdown(RULES);
        assert!(undocumented(&docs, RULES).is_empty());
        let stale = docs.replace("`transient`", "`rejected`");
        assert_eq!(undocumented(&stale, RULES), vec!["| 2 | `transient` | busy |".to_owned()]);
        assert_eq!(lookup(RULES, "1").map(|r| r.class), Some(ErrorClass::Unreachable));
        assert!(lookup(RULES, "3").is_none());
    }
}
