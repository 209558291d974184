//! Redaction of evidence: what a container's inspect data and logs may not carry into a bundle.
//!
//! Evidence bundles are read by more people than may read a service's credentials, so
//! [`container`] rewrites a container's inspect answer (the engine's JSON, field names as Docker
//! spells them) before it is archived, and lists every change as a [`Redaction`] that names the
//! place and the reason, never the value. Pure: no I/O, so every rule is unit-tested here.
//!
//! The rules, applied to the structured data (never to serialized text):
//!
//! 1. **Environment** (`/Config/Env`): every value is replaced by [`MARKER`], the variable names
//!    stay (`DB_PASSWORD=[redacted]`). Environment values are secrets too often to guess which
//!    ones are safe.
//! 2. **Sensitive names**: a name is sensitive when, lower-cased with `-`, `.`, `/` and spaces
//!    read as `_`, it contains one of [`SENSITIVE_WORDS`] (`auth` also in `authorization`,
//!    not in `author`, `authors`, `authority`).
//!    - Labels (`/Config/Labels`), log driver options (`/HostConfig/LogConfig/Config`) and any
//!      other string-valued member of the inspect data with a sensitive name: the whole value.
//!    - Arguments (`/Path`, `/Args`, `/Config/Cmd`, `/Config/Entrypoint`,
//!      `/Config/Healthcheck/Test`; also the words of a shell string inside one of them, and of
//!      a label value): `--flag=value`, `-flag=value` and `KEY=value` lose the value when the
//!      flag or key is sensitive; `--flag value` and a header-style `Name: value` lose the next
//!      word (a flag starting with `--` is not taken for a value), and after a header name
//!      followed by a scheme word (`Authorization: Bearer xyz`) the word after it as well; the
//!      word `Bearer` hides the word after it.
//! 3. **URLs with user info** anywhere in the inspect data (`scheme://user:pass@host`): the user
//!    info is replaced (`postgres://[redacted]@db:5432/app`), the rest of the URL stays.
//! 4. **Known secrets in logs**: a value removed under rule 2 or 3 (and the value of an
//!    environment variable with a sensitive name) that is at least [`MIN_SCRUB_LEN`] bytes long
//!    is also replaced wherever it appears in that container's logs.
//!
//! What this cannot see: secrets under names that match no word of the list (other than in the
//! environment), single-letter flags (`-p secret`), positional secrets (`login user secret`),
//! secrets inside structured text such as JSON in a label, and secrets the container logs that
//! appear nowhere in its configuration. Logs are otherwise copied as the container wrote them.

use serde::Serialize;
use serde_json::Value;

/// What a redacted value is replaced with.
pub const MARKER: &str = "[redacted]";

/// Words that make a name (environment variable, label, flag, option, key) sensitive, matched
/// case-insensitively as parts of the name after `-`, `.`, `/` and spaces are read as `_`.
pub const SENSITIVE_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "accesskey",
    "private_key",
    "privatekey",
    "credential",
    "auth",
    "bearer",
    "session",
    "cookie",
    "dsn",
    "connection_string",
    "connectionstring",
];

/// Shorter known secrets are not searched for in logs: they would hide ordinary words.
pub const MIN_SCRUB_LEN: usize = 6;

/// Which file of a container's evidence a redaction changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum File {
    /// `inspect.json`.
    #[serde(rename = "inspect.json")]
    Inspect,
    /// `logs.txt`.
    #[serde(rename = "logs.txt")]
    Logs,
}

/// Why a value was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Every environment value is removed.
    EnvironmentValue,
    /// The value of a label, option, flag or key whose name contains a sensitive word.
    SensitiveName,
    /// The user info of a URL (`scheme://user:pass@host`).
    UrlUserinfo,
    /// A secret found in the configuration, removed from the logs too.
    KnownSecret,
}

/// One removed value: where and why, never what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redaction {
    pub file: File,
    /// A JSON Pointer (RFC 6901) into the inspect data: where the value was (for
    /// [`File::Inspect`]) or where the secret removed from the logs was found (for
    /// [`File::Logs`]).
    pub path: String,
    /// The variable, label, flag or header the value belonged to, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub reason: Reason,
    /// The sensitive word the name matched ([`Reason::SensitiveName`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword: Option<&'static str>,
    /// How many times the secret was found in the logs ([`Reason::KnownSecret`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurrences: Option<usize>,
}

/// The sensitive word `name` contains, if any (see [`SENSITIVE_WORDS`]).
pub fn sensitive_word(name: &str) -> Option<&'static str> {
    let normalized: String = name
        .chars()
        .map(|c| match c {
            '-' | '.' | '/' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    SENSITIVE_WORDS.iter().copied().find(|word| {
        normalized.match_indices(word).any(|(at, _)| {
            // `auth` is in `authorization`, `oauth`, `x_auth_token`; not in `authors`,
            // `authority`.
            let after = &normalized[at + word.len()..];
            *word != "auth"
                || !after.starts_with("or")
                || after.starts_with("oriz")
                || after.starts_with("oris")
        })
    })
}

/// Redacts one container's inspect data in place, then scrubs the secrets found there from its
/// `logs`. Returns every change, in the order made.
pub fn container(inspect: &mut Value, logs: &mut String) -> Vec<Redaction> {
    let mut r = Redactor::default();
    r.environment(inspect);
    for path in ["/Config/Labels", "/HostConfig/LogConfig/Config"] {
        r.named_values(inspect, path);
    }
    // What the engine ran, and what the configuration says it runs.
    r.arguments(inspect, &["/Path", "/Args"]);
    r.arguments(inspect, &["/Config/Entrypoint", "/Config/Cmd"]);
    r.arguments(inspect, &["/Config/Healthcheck/Test"]);
    r.everything_else(inspect, String::new());
    r.scrub(logs);
    r.records
}

/// A secret found in the configuration: where, and under which name.
struct Known {
    value: String,
    path: String,
    name: Option<String>,
}

#[derive(Default)]
struct Redactor {
    records: Vec<Redaction>,
    known: Vec<Known>,
}

/// A part of a string to replace with the marker, and why.
struct Cut {
    start: usize,
    end: usize,
    name: Option<String>,
    reason: Reason,
    keyword: Option<&'static str>,
}

impl Redactor {
    fn record(
        &mut self,
        path: &str,
        name: Option<String>,
        reason: Reason,
        keyword: Option<&'static str>,
    ) {
        self.records.push(Redaction {
            file: File::Inspect,
            path: path.to_owned(),
            name,
            reason,
            keyword,
            occurrences: None,
        });
    }

    /// Replaces a whole value whose name is sensitive.
    fn replace_named(&mut self, path: &str, text: &mut String, name: &str, keyword: &'static str) {
        let old = std::mem::replace(text, MARKER.to_owned());
        self.know(&old, path, Some(name.to_owned()));
        self.record(
            path,
            Some(name.to_owned()),
            Reason::SensitiveName,
            Some(keyword),
        );
    }

    /// Applies the cuts of `scan` to the string `text` at `path`.
    fn scan_one(&mut self, path: &str, text: &mut String, scan: fn(&str) -> Vec<Cut>) {
        let cuts = scan(text);
        if !cuts.is_empty() {
            let mut copy = std::mem::take(text);
            self.apply(path, &mut copy, cuts);
            *text = copy;
        }
    }

    fn know(&mut self, value: &str, path: &str, name: Option<String>) {
        if value.len() >= MIN_SCRUB_LEN && value != MARKER {
            self.known.push(Known {
                value: value.to_owned(),
                path: path.to_owned(),
                name,
            });
        }
    }

    /// Applies `cuts` (sorted, not overlapping) to the string at `path`, recording each.
    fn apply(&mut self, path: &str, text: &mut String, cuts: Vec<Cut>) {
        for cut in cuts.iter().rev() {
            let value = text[cut.start..cut.end].to_owned();
            let known = match cut.reason {
                Reason::UrlUserinfo => password_of(&value).to_owned(),
                _ => value,
            };
            self.know(&known, path, cut.name.clone());
            text.replace_range(cut.start..cut.end, MARKER);
        }
        for cut in cuts {
            self.record(path, cut.name, cut.reason, cut.keyword);
        }
    }

    /// Rule 1: every environment value.
    fn environment(&mut self, inspect: &mut Value) {
        let Some(Value::Array(env)) = inspect.pointer_mut("/Config/Env") else {
            return;
        };
        let mut found = Vec::new();
        for (i, entry) in env.iter_mut().enumerate() {
            let Value::String(entry) = entry else {
                continue;
            };
            let Some((name, value)) = entry.split_once('=') else {
                continue;
            };
            let path = format!("/Config/Env/{i}");
            let secret = if sensitive_word(name).is_some() {
                Some(value.to_owned())
            } else {
                userinfo_cuts(value, 0)
                    .first()
                    .map(|c| password_of(&value[c.start..c.end]).to_owned())
            };
            found.push((path, name.to_owned(), secret));
            *entry = format!("{name}={MARKER}");
        }
        for (path, name, secret) in found {
            if let Some(secret) = secret {
                self.know(&secret, &path, Some(name.clone()));
            }
            self.records.push(Redaction {
                file: File::Inspect,
                path,
                name: Some(name),
                reason: Reason::EnvironmentValue,
                keyword: None,
                occurrences: None,
            });
        }
    }

    /// Rule 2 for a map of names to values (labels, options): a sensitive name loses its value;
    /// other values are scanned as text.
    fn named_values(&mut self, inspect: &mut Value, path: &str) {
        let Some(Value::Object(map)) = inspect.pointer_mut(path) else {
            return;
        };
        for (key, value) in map.iter_mut() {
            let Value::String(text) = value else {
                continue;
            };
            let at = format!("{path}/{}", pointer_token(key));
            match sensitive_word(key) {
                Some(keyword) if !text.is_empty() && text != MARKER => {
                    self.replace_named(&at, text, key, keyword)
                }
                Some(_) => {}
                None => self.scan_one(&at, text, words_of_one),
            }
        }
    }

    /// Rule 2 for one command line made of the fields at `paths`, in order (a string field is
    /// one argument, an array field one argument per item), so that a flag at the end of one
    /// field hides the value at the start of the next.
    fn arguments(&mut self, inspect: &mut Value, paths: &[&str]) {
        let mut places = Vec::new();
        let mut texts = Vec::new();
        for path in paths {
            match inspect.pointer(path) {
                Some(Value::String(text)) => {
                    places.push(path.to_string());
                    texts.push(text.clone());
                }
                Some(Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        places.push(format!("{path}/{i}"));
                        texts.push(item.as_str().unwrap_or_default().to_owned());
                    }
                }
                _ => {}
            }
        }
        let words: Vec<&str> = texts.iter().map(String::as_str).collect();
        for (place, cuts) in places.iter().zip(text_cuts(&words)) {
            if let Some(Value::String(text)) = inspect.pointer_mut(place) {
                let mut copy = std::mem::take(text);
                self.apply(place, &mut copy, cuts);
                *text = copy;
            }
        }
    }

    /// Rules 2 and 3 for the rest: any string member with a sensitive name, and the user info
    /// of URLs in any string.
    fn everything_else(&mut self, value: &mut Value, path: String) {
        match value {
            Value::Object(map) => {
                for (key, member) in map.iter_mut() {
                    let at = format!("{path}/{}", pointer_token(key));
                    match (&mut *member, sensitive_word(key)) {
                        (Value::String(text), Some(keyword)) => {
                            if !text.is_empty() && text != MARKER {
                                self.replace_named(&at, text, key, keyword);
                            }
                        }
                        (member, _) => self.everything_else(member, at),
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.everything_else(item, format!("{path}/{i}"));
                }
            }
            Value::String(text) => self.scan_one(&path, text, |t| userinfo_cuts(t, 0)),
            _ => {}
        }
    }

    /// Rule 4: known secrets out of the logs, longest first.
    fn scrub(&mut self, logs: &mut String) {
        let mut known = std::mem::take(&mut self.known);
        known.sort_by_key(|k| std::cmp::Reverse(k.value.len()));
        for k in known {
            let occurrences = logs.matches(k.value.as_str()).count();
            if occurrences == 0 {
                continue;
            }
            *logs = logs.replace(k.value.as_str(), MARKER);
            self.records.push(Redaction {
                file: File::Logs,
                path: k.path,
                name: k.name,
                reason: Reason::KnownSecret,
                keyword: None,
                occurrences: Some(occurrences),
            });
        }
    }
}

/// RFC 6901: `~` is `~0`, `/` is `~1`.
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The password of `user:password` user info, or all of it when there is no password.
fn password_of(userinfo: &str) -> &str {
    match userinfo.split_once(':') {
        Some((_, password)) if !password.is_empty() => password,
        _ => userinfo,
    }
}

/// The user info parts of every `scheme://userinfo@host` in `text`, as cuts offset by `base`.
fn userinfo_cuts(text: &str, base: usize) -> Vec<Cut> {
    let mut cuts = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let start = from + found + 3;
        let authority_len = text[start..]
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(text.len() - start);
        let authority = &text[start..start + authority_len];
        if let Some(at) = authority.rfind('@') {
            // Already redacted user info is left alone.
            if at > 0 && &authority[..at] != MARKER {
                cuts.push(Cut {
                    start: base + start,
                    end: base + start + at,
                    name: None,
                    reason: Reason::UrlUserinfo,
                    keyword: None,
                });
            }
        }
        from = start + authority_len;
    }
    cuts
}

/// [`text_cuts`] of a single string.
fn words_of_one(text: &str) -> Vec<Cut> {
    text_cuts(&[text]).pop().unwrap_or_default()
}

/// What to do with the word after the current one.
#[derive(Clone, Copy)]
enum Next {
    /// Nothing special.
    Keep,
    /// Redact it: the value of a sensitive flag.
    Value,
    /// Redact it, and if it is a scheme word (letters only), the word after it too.
    HeaderValue,
}

/// Rules 2 and 3 over the words of `texts` (the elements of one argument list, or one string):
/// for each element, the parts to cut, sorted.
fn text_cuts(texts: &[&str]) -> Vec<Vec<Cut>> {
    let mut all: Vec<Vec<Cut>> = texts.iter().map(|_| Vec::new()).collect();
    let mut next = Next::Keep;
    let mut owner: Option<(String, &'static str)> = None;
    for (i, text) in texts.iter().enumerate() {
        for (start, word) in words(text) {
            let (inner_start, inner) = unquote(word);
            let inner_start = start + inner_start;
            let pending = std::mem::replace(&mut next, Next::Keep);
            if !matches!(pending, Next::Keep) && !inner.starts_with("--") && !inner.is_empty() {
                let (name, keyword) = owner.clone().expect("a pending value has an owner");
                all[i].push(Cut {
                    start: inner_start,
                    end: inner_start + inner.len(),
                    name: Some(name),
                    reason: Reason::SensitiveName,
                    keyword: Some(keyword),
                });
                if matches!(pending, Next::HeaderValue)
                    && inner.chars().all(|c| c.is_ascii_alphabetic())
                {
                    next = Next::Value;
                }
                continue;
            }
            if let Some((key, value)) = inner.split_once('=') {
                let name = key.trim_start_matches('-');
                if let Some(keyword) = sensitive_word(name) {
                    let value = value.trim_end_matches([';', ',', ')']);
                    if !value.is_empty() && value != MARKER {
                        let start = inner_start + key.len() + 1;
                        all[i].push(Cut {
                            start,
                            end: start + value.len(),
                            name: Some(key.to_owned()),
                            reason: Reason::SensitiveName,
                            keyword: Some(keyword),
                        });
                    }
                    continue;
                }
            } else if let Some(keyword) = flag_or_header(inner) {
                owner = Some((inner.to_owned(), keyword));
                next = if inner.ends_with(':') {
                    Next::HeaderValue
                } else {
                    Next::Value
                };
                continue;
            }
            all[i].extend(userinfo_cuts(inner, inner_start));
        }
    }
    all
}

/// The sensitive word of a `--flag`, `-flag`, `Header-Name:` or the word `Bearer`.
fn flag_or_header(word: &str) -> Option<&'static str> {
    if word.eq_ignore_ascii_case("bearer") {
        return Some("bearer");
    }
    let name = if word.starts_with('-') {
        word.trim_start_matches('-')
    } else {
        word.strip_suffix(':')?
    };
    if name.is_empty() {
        return None;
    }
    sensitive_word(name)
}

/// The words of `text` between ASCII whitespace (one byte each), with their byte offsets.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split(|c: char| c.is_ascii_whitespace())
        .scan(0, |offset, word| {
            let start = *offset;
            *offset += word.len() + 1;
            Some((start, word))
        })
        .filter(|(_, word)| !word.is_empty())
}

/// `word` without the quotes around it (a shell word such as `'--password=x'`), and the offset
/// of what is left.
fn unquote(word: &str) -> (usize, &str) {
    let quotes: &[char] = &['\'', '"'];
    let trimmed = word.trim_start_matches(quotes);
    let start = word.len() - trimmed.len();
    (start, trimmed.trim_end_matches(quotes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redact(mut inspect: Value) -> (Value, Vec<Redaction>) {
        let mut logs = String::new();
        let records = container(&mut inspect, &mut logs);
        (inspect, records)
    }

    fn paths(records: &[Redaction]) -> Vec<&str> {
        records.iter().map(|r| r.path.as_str()).collect()
    }

    #[test]
    fn every_environment_value_is_replaced_and_every_name_kept() {
        let (out, records) = redact(json!({ "Config": { "Env": [
            "PATH=/bin", "DB_PASSWORD=hunter2-secret", "EMPTY=", "NO_EQUALS_SIGN"
        ]}}));
        assert_eq!(
            out["Config"]["Env"],
            json!([
                "PATH=[redacted]",
                "DB_PASSWORD=[redacted]",
                "EMPTY=[redacted]",
                "NO_EQUALS_SIGN"
            ])
        );
        assert_eq!(
            paths(&records),
            ["/Config/Env/0", "/Config/Env/1", "/Config/Env/2"]
        );
        assert_eq!(records[1].name.as_deref(), Some("DB_PASSWORD"));
        assert!(records
            .iter()
            .all(|r| r.reason == Reason::EnvironmentValue && r.file == File::Inspect));
    }

    #[test]
    fn names_match_the_documented_words_case_insensitively() {
        for name in [
            "DB_PASSWORD",
            "passwd",
            "com.example.api-token",
            "x-api-key",
            "apiKey",
            "AWS_SECRET_ACCESS_KEY",
            "ACCESS_KEY_ID",
            "privateKey",
            "tls.private-key",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "Authorization",
            "OAUTH_CLIENT",
            "BEARER",
            "session_id",
            "Cookie",
            "SENTRY_DSN",
            "ConnectionString",
            "db.connection-string",
        ] {
            assert!(sensitive_word(name).is_some(), "{name} should be sensitive");
        }
        for name in [
            "PATH",
            "HOSTNAME",
            "com.docker.compose.service",
            "org.opencontainers.image.authors",
            "author",
            "LOG_LEVEL",
            "PWD",
            "cert-authority",
        ] {
            assert_eq!(sensitive_word(name), None, "{name} should not be sensitive");
        }
        assert_eq!(sensitive_word("My-Api-Token"), Some("token"));
    }

    #[test]
    fn labels_with_sensitive_names_lose_their_values_and_others_stay() {
        let (out, records) = redact(json!({ "Config": { "Labels": {
            "com.example.api-token": "tok-secret",
            "com.docker.compose.service": "web",
            "org.opencontainers.image.authors": "ops@example.com",
            "com.example/odd~key.password": "pw-secret",
        }}}));
        let labels = &out["Config"]["Labels"];
        assert_eq!(labels["com.example.api-token"], MARKER);
        assert_eq!(labels["com.example/odd~key.password"], MARKER);
        assert_eq!(labels["com.docker.compose.service"], "web");
        assert_eq!(
            labels["org.opencontainers.image.authors"],
            "ops@example.com"
        );
        let mut listed = paths(&records);
        listed.sort();
        assert_eq!(
            listed,
            [
                "/Config/Labels/com.example.api-token",
                "/Config/Labels/com.example~1odd~0key.password",
            ]
        );
        let token = records
            .iter()
            .find(|r| r.path.ends_with("api-token"))
            .unwrap();
        assert_eq!(token.reason, Reason::SensitiveName);
        assert_eq!(token.keyword, Some("token"));
        assert_eq!(token.name.as_deref(), Some("com.example.api-token"));
    }

    #[test]
    fn label_values_are_scanned_as_text() {
        let (out, records) = redact(json!({ "Config": { "Labels": {
            "com.example.upstream": "postgres://app:pw-secret@db:5432/app",
            "com.example.args": "--verbose --token=abc-secret",
        }}}));
        let labels = &out["Config"]["Labels"];
        assert_eq!(
            labels["com.example.upstream"],
            "postgres://[redacted]@db:5432/app"
        );
        assert_eq!(labels["com.example.args"], "--verbose --token=[redacted]");
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn flag_equals_value_and_key_equals_value_lose_the_value() {
        let (out, records) = redact(json!({
            "Path": "app",
            "Args": ["--password=arg-secret", "--port=80", "-Api-Key=k-secret", "PGPASSWORD=pg-secret"],
            "Config": { "Cmd": ["app", "--password=arg-secret", "--port=80"] },
        }));
        assert_eq!(
            out["Args"],
            json!([
                "--password=[redacted]",
                "--port=80",
                "-Api-Key=[redacted]",
                "PGPASSWORD=[redacted]"
            ])
        );
        assert_eq!(
            out["Config"]["Cmd"],
            json!(["app", "--password=[redacted]", "--port=80"])
        );
        assert_eq!(
            paths(&records),
            ["/Args/0", "/Args/2", "/Args/3", "/Config/Cmd/1"]
        );
        assert_eq!(records[0].name.as_deref(), Some("--password"));
        assert_eq!(records[0].keyword, Some("password"));
        assert_eq!(records[1].keyword, Some("api_key"));
    }

    #[test]
    fn a_sensitive_flag_loses_the_next_argument_unless_that_is_another_flag() {
        let (out, records) = redact(json!({ "Config": {
            "Entrypoint": ["app", "--token", "tok-secret", "--port", "80"],
            "Cmd": ["--no-auth", "--verbose", "--session", "-abc-secret"],
        }}));
        assert_eq!(
            out["Config"]["Entrypoint"],
            json!(["app", "--token", "[redacted]", "--port", "80"])
        );
        assert_eq!(
            out["Config"]["Cmd"],
            json!(["--no-auth", "--verbose", "--session", "[redacted]"])
        );
        assert_eq!(paths(&records), ["/Config/Entrypoint/2", "/Config/Cmd/3"]);
        assert_eq!(records[0].name.as_deref(), Some("--token"));
    }

    #[test]
    fn a_flag_at_the_end_of_the_entrypoint_hides_the_first_command_argument() {
        let (out, records) = redact(json!({
            "Path": "app",
            "Args": ["--password", "pw-secret"],
            "Config": { "Entrypoint": ["app", "--password"], "Cmd": ["pw-secret", "--port=80"] },
        }));
        assert_eq!(out["Args"], json!(["--password", "[redacted]"]));
        assert_eq!(out["Config"]["Cmd"], json!(["[redacted]", "--port=80"]));
        assert_eq!(paths(&records), ["/Args/1", "/Config/Cmd/0"]);
    }

    #[test]
    fn shell_strings_are_read_word_by_word() {
        let (out, records) = redact(json!({ "Config": {
            "Cmd": ["sh", "-c", "PGPASSWORD=pg-secret psql --password 'pw-secret' -h db; echo done"],
            "Healthcheck": { "Test": [
                "CMD-SHELL",
                "curl -fsS -H 'Authorization: Bearer hdr-secret' -H \"Cookie: c-secret\" http://localhost/health"
            ]},
        }}));
        assert_eq!(
            out["Config"]["Cmd"][2],
            "PGPASSWORD=[redacted] psql --password '[redacted]' -h db; echo done"
        );
        assert_eq!(
            out["Config"]["Healthcheck"]["Test"][1],
            "curl -fsS -H 'Authorization: [redacted] [redacted]' -H \"Cookie: [redacted]\" http://localhost/health"
        );
        assert!(paths(&records)
            .iter()
            .all(|p| *p == "/Config/Cmd/2" || *p == "/Config/Healthcheck/Test/1"));
        assert_eq!(records.len(), 5);
    }

    #[test]
    fn a_bearer_word_hides_the_word_after_it() {
        let (out, _) = redact(json!({ "Args": ["--header", "X: Bearer abc.def.secret"] }));
        assert_eq!(out["Args"][1], "X: Bearer [redacted]");
    }

    #[test]
    fn urls_with_user_info_lose_it_anywhere_and_others_stay() {
        let (out, records) = redact(json!({
            "Args": ["--upstream", "https://user:url-secret@example.com/x", "http://example.com/a@b"],
            "Config": { "Image": "registry.local/app:1", "OnBuild": ["redis://:only-pw@cache:6379"] },
            "Mounts": [{ "Source": "/srv/user@host" }],
        }));
        assert_eq!(out["Args"][1], "https://[redacted]@example.com/x");
        assert_eq!(out["Args"][2], "http://example.com/a@b");
        assert_eq!(out["Config"]["OnBuild"][0], "redis://[redacted]@cache:6379");
        assert_eq!(out["Config"]["Image"], "registry.local/app:1");
        assert_eq!(out["Mounts"][0]["Source"], "/srv/user@host");
        assert_eq!(paths(&records), ["/Args/1", "/Config/OnBuild/0"]);
        assert!(records.iter().all(|r| r.reason == Reason::UrlUserinfo));
    }

    #[test]
    fn log_options_and_other_members_with_sensitive_names_are_redacted() {
        let (out, records) = redact(json!({ "HostConfig": {
            "LogConfig": { "Type": "splunk", "Config": { "splunk-token": "sp-secret", "splunk-url": "https://splunk" } },
            "Annotations": { "vendor.session-cookie": "an-secret", "vendor.note": "fine" },
        }}));
        let host = &out["HostConfig"];
        assert_eq!(host["LogConfig"]["Config"]["splunk-token"], MARKER);
        assert_eq!(host["LogConfig"]["Config"]["splunk-url"], "https://splunk");
        assert_eq!(host["Annotations"]["vendor.session-cookie"], MARKER);
        assert_eq!(host["Annotations"]["vendor.note"], "fine");
        let mut listed = paths(&records);
        listed.sort();
        assert_eq!(
            listed,
            [
                "/HostConfig/Annotations/vendor.session-cookie",
                "/HostConfig/LogConfig/Config/splunk-token"
            ]
        );
    }

    #[test]
    fn known_secrets_are_scrubbed_from_the_logs() {
        let mut inspect = json!({
            "Args": ["--password=arg-secret", "--token", "short"],
            "Config": {
                "Env": ["DB_PASSWORD=hunter2-secret", "MODE=production", "URL=postgres://u:url-pw-1@db/x"],
                "Labels": { "com.example.api-token": "tok-secret" },
            },
        });
        let mut logs = "connect hunter2-secret\nhunter2-secret again tok-secret arg-secret\n\
                        mode production, short, url-pw-1\n"
            .to_owned();
        let records = container(&mut inspect, &mut logs);
        assert_eq!(
            logs,
            "connect [redacted]\n[redacted] again [redacted] [redacted]\n\
             mode production, short, [redacted]\n"
        );
        let in_logs: Vec<_> = records.iter().filter(|r| r.file == File::Logs).collect();
        assert_eq!(in_logs.len(), 4);
        let db = in_logs
            .iter()
            .find(|r| r.name.as_deref() == Some("DB_PASSWORD"))
            .unwrap();
        assert_eq!(db.occurrences, Some(2));
        assert_eq!(db.path, "/Config/Env/0");
        assert_eq!(db.reason, Reason::KnownSecret);
    }

    #[test]
    fn the_records_never_hold_a_value() {
        let mut inspect = json!({
            "Path": "app",
            "Args": ["--password=arg-secret", "--token", "tok2-secret", "https://u:url-secret@h/"],
            "Config": {
                "Env": ["DB_PASSWORD=hunter2-secret"],
                "Labels": { "com.example.api-token": "tok-secret" },
                "Cmd": ["app", "--password=arg-secret"],
            },
        });
        let mut logs = "hunter2-secret tok-secret arg-secret url-secret tok2-secret".to_owned();
        let records = container(&mut inspect, &mut logs);
        let text = serde_json::to_string(&records).unwrap()
            + &serde_json::to_string(&inspect).unwrap()
            + &logs;
        for secret in [
            "hunter2",
            "tok-secret",
            "arg-secret",
            "url-secret",
            "tok2-secret",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn missing_and_null_fields_are_fine() {
        let (out, records) = redact(json!({
            "Path": null, "Args": [], "Config": { "Env": null, "Cmd": null, "Entrypoint": null, "Labels": {} },
        }));
        assert!(records.is_empty());
        assert_eq!(out["Config"]["Cmd"], Value::Null);
        let (_, records) = redact(json!("not an object"));
        assert!(records.is_empty());
    }

    #[test]
    fn records_serialize_as_documented() {
        let (_, records) = redact(json!({ "Config": { "Labels": { "api-token": "tok-secret" } } }));
        assert_eq!(
            serde_json::to_value(&records).unwrap(),
            json!([{
                "file": "inspect.json",
                "path": "/Config/Labels/api-token",
                "name": "api-token",
                "reason": "sensitive_name",
                "keyword": "token",
            }])
        );
    }
}
