//! Target names: the one spelling of a service or edge device that brain counts its limits
//! per and ops-worker acts on.
//!
//! A name is canonical when it is spelled the way Docker Compose service names are written:
//! lower-case ASCII letters and digits plus `.`, `_` and `-`, starting with a letter or digit,
//! at most [`MAX_LEN`] characters, and not the reserved word [`ALL`]. Nothing is trimmed or
//! case-folded: `"web "`, `" web"` and `"Web"` are refused rather than read as `web`, because a
//! platform that quietly repairs names lets one service hide behind many spellings (each with
//! a cooldown of its own) and lets a typo act on something its sender did not name.
//!
//! `all` ("every allowlisted service") is not a name: only an operator's signed ops command may
//! say it, through [`OpsTarget`]; brain never renders it from incident data.

use std::fmt;

/// The reserved target of an ops command that means every allowlisted service.
pub const ALL: &str = "all";

/// Longest canonical name, in characters: a DNS label, as a Compose service name is also the
/// host name other containers reach it by.
pub const MAX_LEN: usize = 63;

/// A canonical target name (see the [module docs](self)). Only [`CanonicalTarget::parse`]
/// makes one, so holding one is proof that the name was checked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CanonicalTarget(String);

impl CanonicalTarget {
    /// Checks `text` as it is, without trimming or folding case.
    pub fn parse(text: &str) -> Result<Self, TargetError> {
        match problem(text) {
            Some(problem) => Err(TargetError {
                target: text.to_owned(),
                problem,
            }),
            None => Ok(Self(text.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CanonicalTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for CanonicalTarget {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for CanonicalTarget {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl AsRef<str> for CanonicalTarget {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for CanonicalTarget {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// What a target-taking ops command names: every allowlisted service, or one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OpsTarget {
    /// [`ALL`]: every allowlisted service.
    All,
    /// One canonical name (which the allowlist must still contain).
    One(CanonicalTarget),
}

impl OpsTarget {
    /// `all`, or else a canonical name.
    pub fn parse(text: &str) -> Result<Self, TargetError> {
        if text == ALL {
            Ok(Self::All)
        } else {
            CanonicalTarget::parse(text).map(Self::One)
        }
    }
}

/// A name that is not canonical: the text (as received) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target {} is not a canonical name: {problem}", quoted(.target))]
pub struct TargetError {
    pub target: String,
    pub problem: TargetProblem,
}

/// The first rule a name breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetProblem {
    #[error("it is empty")]
    Empty,
    #[error("it has leading or trailing whitespace (names are never trimmed)")]
    SurroundingWhitespace,
    #[error("it contains the control character {0:?}")]
    ControlCharacter(char),
    #[error("it contains the uppercase letter {0:?} (names are lower-case and never case-folded)")]
    Uppercase(char),
    #[error("it contains {0:?}; only a-z, 0-9, '.', '_' and '-' are allowed")]
    InvalidCharacter(char),
    #[error("it starts with {0:?}; a name starts with a letter or a digit")]
    InvalidStart(char),
    #[error("it is {0} characters long; at most {MAX_LEN} are allowed")]
    TooLong(usize),
    #[error("`all` is reserved: it means every allowlisted service, which only an operator's signed ops command may ask for")]
    ReservedAll,
}

fn problem(text: &str) -> Option<TargetProblem> {
    let Some(first) = text.chars().next() else {
        return Some(TargetProblem::Empty);
    };
    if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
        return Some(TargetProblem::SurroundingWhitespace);
    }
    let length = text.chars().count();
    if length > MAX_LEN {
        return Some(TargetProblem::TooLong(length));
    }
    for c in text.chars() {
        match c {
            'a'..='z' | '0'..='9' | '.' | '_' | '-' => {}
            c if c.is_control() => return Some(TargetProblem::ControlCharacter(c)),
            c if c.is_uppercase() => return Some(TargetProblem::Uppercase(c)),
            c => return Some(TargetProblem::InvalidCharacter(c)),
        }
    }
    if !first.is_ascii_alphanumeric() {
        return Some(TargetProblem::InvalidStart(first));
    }
    (text == ALL).then_some(TargetProblem::ReservedAll)
}

/// The text as a quoted, escaped string (control characters visible, nothing injected into
/// logs or receipts), cut after [`MAX_LEN`] characters.
fn quoted(text: &str) -> String {
    let head: String = text.chars().take(MAX_LEN).collect();
    if head.len() < text.len() {
        format!("{head:?}…")
    } else {
        format!("{head:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> TargetProblem {
        match CanonicalTarget::parse(text) {
            Ok(name) => panic!("{text:?} was accepted as {name}"),
            Err(e) => {
                assert_eq!(e.target, text, "the error keeps the text as received");
                e.problem
            }
        }
    }

    #[test]
    fn compose_style_names_are_canonical_as_they_are() {
        for name in [
            "web",
            "api-2",
            "payments.api",
            "edge_gw-7",
            "0day",
            "a",
            &"x".repeat(MAX_LEN),
        ] {
            let target = CanonicalTarget::parse(name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(target.as_str(), name);
            assert_eq!(target.to_string(), name);
        }
        let id = uuid::Uuid::new_v4().to_string();
        assert!(
            CanonicalTarget::parse(&id).is_ok(),
            "an incident id is a name"
        );
    }

    #[test]
    fn each_broken_rule_is_named() {
        use TargetProblem::*;
        let cases: &[(&str, TargetProblem)] = &[
            ("", Empty),
            ("web ", SurroundingWhitespace),
            (" web", SurroundingWhitespace),
            ("web\t", SurroundingWhitespace),
            ("web\n", SurroundingWhitespace),
            ("web\u{a0}", SurroundingWhitespace),
            (" ", SurroundingWhitespace),
            ("we\u{0}b", ControlCharacter('\0')),
            ("web\u{1b}[31m", ControlCharacter('\u{1b}')),
            ("we\u{7f}b", ControlCharacter('\u{7f}')),
            ("Web", Uppercase('W')),
            ("wEB", Uppercase('E')),
            ("ALL", Uppercase('A')),
            ("Éclair", Uppercase('É')),
            ("we b", InvalidCharacter(' ')),
            ("web/1", InvalidCharacter('/')),
            ("web:8080", InvalidCharacter(':')),
            ("*", InvalidCharacter('*')),
            ("wéb", InvalidCharacter('é')),
            ("we\u{200b}b", InvalidCharacter('\u{200b}')),
            ("-web", InvalidStart('-')),
            (".web", InvalidStart('.')),
            ("_", InvalidStart('_')),
            ("all", ReservedAll),
        ];
        for (text, problem) in cases {
            assert_eq!(refused(text), *problem, "{text:?}");
        }
        assert_eq!(refused(&"x".repeat(MAX_LEN + 1)), TooLong(MAX_LEN + 1));
        assert_eq!(
            "Web".parse::<CanonicalTarget>().unwrap_err().problem,
            Uppercase('W')
        );
    }

    #[test]
    fn errors_show_the_target_escaped_and_say_what_is_wrong() {
        let text = CanonicalTarget::parse("web\t").unwrap_err().to_string();
        assert_eq!(
            text,
            r#"target "web\t" is not a canonical name: it has leading or trailing whitespace (names are never trimmed)"#
        );
        let text = CanonicalTarget::parse("all").unwrap_err().to_string();
        assert!(text.contains("`all` is reserved"), "{text}");
        let text = CanonicalTarget::parse("Web").unwrap_err().to_string();
        assert!(text.contains("uppercase letter 'W'"), "{text}");
        // A huge value is cut in the message, not repeated whole into receipts and logs.
        let long = "a".repeat(10_000);
        let text = CanonicalTarget::parse(&long).unwrap_err().to_string();
        assert!(text.len() < 200, "{text}");
        assert!(text.contains("10000 characters long"), "{text}");
    }

    #[test]
    fn ops_targets_are_all_or_a_canonical_name() {
        assert_eq!(OpsTarget::parse("all"), Ok(OpsTarget::All));
        assert_eq!(
            OpsTarget::parse("web"),
            Ok(OpsTarget::One(CanonicalTarget::parse("web").unwrap()))
        );
        for text in ["", "all ", "ALL", " all", "web "] {
            assert!(OpsTarget::parse(text).is_err(), "{text:?}");
        }
    }
}
