//! [`Permissions`]: which user may call, or notify, which commands.
//!
//! A rule names a user id (`*`: anyone, including a peer with no user id), what it may do
//! (`call`: requests on a REP input; `notify`: one-way messages from a subscription; `any`:
//! both) and a pattern on command names: an exact name, a prefix ending in `*`
//! (`sensor.*`), or `*`. Nothing is allowed that no rule allows. Commands in the
//! administrative namespace [`ADMIN_PREFIX`] (`zmqrpc.admin.`: stopping or reconfiguring a
//! node) are never matched by a wildcard that does not itself start with that prefix: they
//! need a rule of their own.
//!
//! A request carries its command's key (a hash of the name), not always the name. A rule
//! with an exact name matches the key of that name; a wildcard matches the names the checker
//! knows (a server knows every command it serves; a proxy the names it is given with
//! [`Permissions::knowing`]), and `*` matches every key. So an unknown command is refused
//! by every rule but `*`.
//!
//! ```
//! use zmqrpc_transport_std::auth::{Action, Permissions};
//! let permissions = Permissions::parse(
//!     "# who may do what\n\
//!      ops      any     *\n\
//!      sensor-1 notify  sensor.*\n\
//!      *        call    zmqrpc.node.ping\n",
//! )?;
//! assert!(permissions.allows(Some("ops"), Action::Call, "agent.info"));
//! assert!(permissions.allows(Some("sensor-1"), Action::Notify, "sensor.temperature"));
//! assert!(!permissions.allows(Some("sensor-1"), Action::Call, "sensor.temperature"));
//! assert!(permissions.allows(None, Action::Call, "zmqrpc.node.ping"));
//! // A wildcard does not reach the administrative commands.
//! assert!(!permissions.allows(Some("ops"), Action::Call, "zmqrpc.admin.stop"));
//! # Ok::<(), zmqrpc_transport_std::auth::PermissionsError>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use zmqrpc_core::Key;

/// The namespace of commands that change a node (stop, reconfigure): only a rule whose
/// pattern starts with it allows them.
pub const ADMIN_PREFIX: &str = "zmqrpc.admin.";

/// What a peer does with a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A request on a REP (or ROUTER) input, answered.
    Call,
    /// A one-way message from a subscription.
    Notify,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Any,
    Prefix(String),
    Exact { name: String, key: Key },
}

impl Pattern {
    fn new(text: &str) -> Pattern {
        match text.strip_suffix('*') {
            Some("") => Pattern::Any,
            Some(prefix) => Pattern::Prefix(prefix.to_owned()),
            None => Pattern::Exact {
                name: text.to_owned(),
                key: Key::of(text),
            },
        }
    }

    /// Whether the pattern matches the command of `key`, named `name` if that is known.
    fn matches(&self, key: Key, name: Option<&str>) -> bool {
        let admin = name.is_some_and(|name| name.starts_with(ADMIN_PREFIX));
        match self {
            Pattern::Any => !admin,
            Pattern::Prefix(prefix) => name.is_some_and(|name| {
                name.starts_with(prefix.as_str()) && (!admin || prefix.starts_with(ADMIN_PREFIX))
            }),
            Pattern::Exact { key: exact, .. } => *exact == key,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    /// The user id, or `None` for `*` (anyone).
    user: Option<String>,
    /// The actions allowed: `None` for both.
    action: Option<Action>,
    pattern: Pattern,
}

/// Who may call or notify which commands; see the [`auth`](crate::auth) module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    rules: Vec<Rule>,
    /// Names for keys, so wildcards can match commands known only by key.
    names: HashMap<Key, String>,
}

impl Permissions {
    /// No rules: nothing is allowed.
    pub fn new() -> Permissions {
        Permissions::default()
    }

    /// Allows `user` (`*`: anyone) `action` (`None`: calls and notifications) on the
    /// commands `pattern` matches.
    pub fn allow(mut self, user: &str, action: Option<Action>, pattern: &str) -> Permissions {
        self.rules.push(Rule {
            user: (user != "*").then(|| user.to_owned()),
            action,
            pattern: Pattern::new(pattern),
        });
        self
    }

    /// Teaches the checker these command names, so wildcards match them where a request
    /// carries only a key (a proxy's input).
    pub fn knowing<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Permissions {
        for name in names {
            self.names.insert(Key::of(name), name.to_owned());
        }
        self
    }

    /// Reads rules, one `USER ACTION PATTERN` a line (`ACTION`: `call`, `notify` or `any`;
    /// blank lines and `#` comments skipped).
    pub fn parse(text: &str) -> Result<Permissions, PermissionsError> {
        let mut permissions = Permissions::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: &str| PermissionsError::BadLine {
                line: index + 1,
                what: what.to_owned(),
            };
            let mut words = line.split_whitespace();
            let (Some(user), Some(action), Some(pattern), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                return Err(bad("not `USER ACTION PATTERN`"));
            };
            let action = match action {
                "call" => Some(Action::Call),
                "notify" => Some(Action::Notify),
                "any" => None,
                _ => return Err(bad("the action is `call`, `notify` or `any`")),
            };
            if pattern[..pattern.len() - 1].contains('*') {
                return Err(bad("`*` may only end a pattern"));
            }
            permissions = permissions.allow(user, action, pattern);
        }
        Ok(permissions)
    }

    /// Reads a permissions file (see [`Permissions::parse`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Permissions, PermissionsError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| PermissionsError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Permissions::parse(&text)
    }

    /// Whether `user` (`None`: a peer with no user id) may do `action` with the command
    /// named `name`.
    pub fn allows(&self, user: Option<&str>, action: Action, name: &str) -> bool {
        self.allows_key(user, action, Key::of(name), Some(name))
    }

    /// Allows `user` `action` on the command of `key` (named `name` if known), or says why
    /// not, for the error answer: who, what, and which command.
    pub(crate) fn check(
        &self,
        user: Option<&str>,
        action: Action,
        key: Key,
        name: Option<&str>,
    ) -> Result<(), String> {
        if self.allows_key(user, action, key, name) {
            return Ok(());
        }
        let name = name.or_else(|| self.names.get(&key).map(String::as_str));
        Err(format!(
            "{} may not {} {}",
            user.map_or_else(
                || "a caller without a user id".to_owned(),
                |u| format!("{u:?}")
            ),
            match action {
                Action::Call => "call",
                Action::Notify => "notify",
            },
            name.map_or_else(|| format!("the command of key {key}"), str::to_owned)
        ))
    }

    /// Whether `user` may do `action` with the command of `key`, named `name` if the
    /// caller knows it (or else if these permissions were taught it).
    pub(crate) fn allows_key(
        &self,
        user: Option<&str>,
        action: Action,
        key: Key,
        name: Option<&str>,
    ) -> bool {
        let name = name.or_else(|| self.names.get(&key).map(String::as_str));
        self.rules.iter().any(|rule| {
            rule.user.as_deref().is_none_or(|u| Some(u) == user)
                && rule.action.is_none_or(|a| a == action)
                && rule.pattern.matches(key, name)
        })
    }
}

/// A permissions file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionsError {
    /// The file could not be read.
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A line is not a rule.
    BadLine {
        /// Its number, from 1.
        line: usize,
        /// What is wrong with it.
        what: String,
    },
}

impl fmt::Display for PermissionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PermissionsError::Read { path, reason } => write!(f, "cannot read {path}: {reason}"),
            PermissionsError::BadLine { line, what } => {
                write!(f, "permissions line {line}: {what}")
            }
        }
    }
}

impl std::error::Error for PermissionsError {}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report
mod tests {
    use super::*;

    #[test]
    fn nothing_is_allowed_without_a_rule() {
        assert!(!Permissions::new().allows(Some("ops"), Action::Call, "zmqrpc.node.ping"));
    }

    #[test]
    fn rules_match_by_user_action_and_pattern() {
        let p = Permissions::new()
            .allow("ops", None, "*")
            .allow("sensor", Some(Action::Notify), "sensor.*")
            .allow("*", Some(Action::Call), "zmqrpc.node.ping");
        assert!(p.allows(Some("ops"), Action::Notify, "anything"));
        assert!(p.allows(Some("sensor"), Action::Notify, "sensor.t"));
        assert!(!p.allows(Some("sensor"), Action::Notify, "sensors.t"));
        assert!(!p.allows(Some("sensor"), Action::Call, "sensor.t"));
        assert!(p.allows(Some("stranger"), Action::Call, "zmqrpc.node.ping"));
        assert!(!p.allows(Some("stranger"), Action::Notify, "zmqrpc.node.ping"));
        assert!(!p.allows(None, Action::Call, "agent.info"));
    }

    #[test]
    fn admin_commands_need_a_rule_of_their_own() {
        let p = Permissions::new()
            .allow("ops", None, "*")
            .allow("ops", None, "zmqrpc.*");
        assert!(!p.allows(Some("ops"), Action::Call, "zmqrpc.admin.stop"));
        let p = p.allow("root", None, "zmqrpc.admin.*");
        assert!(p.allows(Some("root"), Action::Call, "zmqrpc.admin.stop"));
        let p = Permissions::new().allow("ops", None, "zmqrpc.admin.stop");
        assert!(p.allows(Some("ops"), Action::Call, "zmqrpc.admin.stop"));
    }

    #[test]
    fn keys_without_names_match_exact_rules_and_star_and_taught_names() {
        let p = Permissions::new()
            .allow("a", None, "sensor.read")
            .allow("b", None, "sensor.*")
            .allow("c", None, "*");
        let key = Key::of("sensor.read");
        assert!(p.allows_key(Some("a"), Action::Call, key, None));
        assert!(!p.allows_key(Some("b"), Action::Call, key, None));
        assert!(p.allows_key(Some("c"), Action::Call, key, None));
        let taught = p.knowing(["sensor.read"]);
        assert!(taught.allows_key(Some("b"), Action::Call, key, None));
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, line) in [
            ("ops any\n", 1),
            ("# c\nops sometimes *\n", 2),
            ("ops any a*b\n", 1),
            ("ops any * extra\n", 1),
        ] {
            match Permissions::parse(text) {
                Err(PermissionsError::BadLine { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
