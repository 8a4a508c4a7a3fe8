//! The dialects revcache knows, in one table: each one's name, whether it
//! takes an event feed, the per-route options it accepts, and how it is
//! built. Adding a dialect is one module and one row here.
//!
//! Options are strings in the config (`[routes.options]`); the table says
//! which keys a dialect accepts, so a misspelt key is refused by name at
//! start-up and on reload, and the dialect's constructor checks the values
//! (a file that must be readable, a path that must be absolute) with errors
//! that name the key too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use revcache_core::PartitionKey;

use super::{Dialect, GerritDialect, GithubDialect, HttpDialect, WebdavDialect};
use crate::settings::{DialectName, EventSettings};

/// One row of the table.
pub struct DialectSpec {
    pub name: DialectName,
    /// Whether routes of this dialect take `events` (a feed or webhooks).
    pub has_events: bool,
    /// The options routes of this dialect accept.
    pub options: &'static [OptionSpec],
    pub build: fn(&DialectContext<'_>) -> Result<Arc<dyn Dialect>, OptionError>,
}

/// An option a dialect accepts.
pub struct OptionSpec {
    pub key: &'static str,
    /// What it means, for error messages and `revcache check`.
    pub help: &'static str,
}

/// What a dialect is built from.
pub struct DialectContext<'a> {
    /// The route's id (part of its keys and tags).
    pub route: u32,
    pub events: Option<&'a EventSettings>,
    pub options: &'a DialectOptions,
    /// When the route's feed starts trusting.
    pub now: SystemTime,
    /// The key partitions are hashed with (a dialect that groups
    /// credentials derives the group's partition with it).
    pub partition_key: &'a PartitionKey,
}

/// A route's dialect options, as configured: key → value.
pub type DialectOptions = BTreeMap<String, String>;

/// A setting of the route's dialect (an option, or an event setting such
/// as the webhook secret's file) that is unknown or whose value it refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{section}.{key}: {message}")]
pub struct OptionError {
    /// `options` or `events`.
    pub section: &'static str,
    pub key: String,
    pub message: String,
}

impl OptionError {
    /// A refused value of `[routes.options] key`.
    pub fn option(key: &str, message: impl Into<String>) -> Self {
        OptionError {
            section: "options",
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

pub static DIALECTS: [DialectSpec; 4] = [
    DialectSpec {
        name: DialectName::Http,
        has_events: false,
        options: HttpDialect::OPTIONS,
        build: |cx| Ok(Arc::new(HttpDialect::with_options(cx.route, cx.options)?)),
    },
    DialectSpec {
        name: DialectName::Gerrit,
        has_events: true,
        options: &[],
        build: |cx| Ok(Arc::new(GerritDialect::new(cx.route, cx.events, cx.now))),
    },
    DialectSpec {
        name: DialectName::Webdav,
        has_events: true,
        options: &[],
        build: |cx| Ok(Arc::new(WebdavDialect::new(cx.route, cx.events, cx.now))),
    },
    DialectSpec {
        name: DialectName::Github,
        has_events: true,
        options: GithubDialect::OPTIONS,
        build: |cx| Ok(Arc::new(GithubDialect::new(cx)?)),
    },
];

impl DialectSpec {
    /// The row for `name`.
    pub fn of(name: DialectName) -> &'static DialectSpec {
        DIALECTS
            .iter()
            .find(|d| d.name == name)
            .unwrap_or(&DIALECTS[0])
    }

    /// The row whose name is `name`, as the config spells it.
    pub fn named(name: &str) -> Option<&'static DialectSpec> {
        DIALECTS.iter().find(|d| d.name.as_str() == name)
    }

    /// Refuses options this dialect does not accept, naming the first.
    pub fn check_keys(&self, options: &DialectOptions) -> Result<(), OptionError> {
        match options
            .keys()
            .find(|k| !self.options.iter().any(|o| o.key == k.as_str()))
        {
            None => Ok(()),
            Some(key) => Err(OptionError {
                section: "options",
                key: key.clone(),
                message: match self.options {
                    [] => format!("the {} dialect takes no options", self.name.as_str()),
                    known => format!(
                        "the {} dialect has no such option (available: {})",
                        self.name.as_str(),
                        known.iter().map(|o| o.key).collect::<Vec<_>>().join(", ")
                    ),
                },
            }),
        }
    }

    /// Builds the dialect for a route after checking its option keys.
    pub fn build(&self, cx: &DialectContext<'_>) -> Result<Arc<dyn Dialect>, OptionError> {
        self.check_keys(cx.options)?;
        (self.build)(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static WITH_OPTIONS: DialectSpec = DialectSpec {
        name: DialectName::Http,
        has_events: false,
        options: &[
            OptionSpec {
                key: "api_base",
                help: "",
            },
            OptionSpec {
                key: "webhook_secret_file",
                help: "",
            },
        ],
        build: |cx| Ok(Arc::new(HttpDialect::new(cx.route))),
    };

    fn options(pairs: &[(&str, &str)]) -> DialectOptions {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_dialect_name_has_exactly_one_row() {
        for name in DialectName::ALL {
            assert_eq!(DIALECTS.iter().filter(|d| d.name == name).count(), 1);
            assert_eq!(
                DialectSpec::named(name.as_str()).map(|d| d.name),
                Some(name)
            );
        }
        assert!(DialectSpec::named("gopher").is_none());
    }

    #[test]
    fn an_unknown_option_is_refused_by_its_key_with_the_known_ones_listed() {
        let e = WITH_OPTIONS
            .check_keys(&options(&[("api_base", "/api/v3"), ("secret", "x")]))
            .unwrap_err();
        assert_eq!(e.key, "secret");
        assert_eq!(
            e.to_string(),
            "options.secret: the http dialect has no such option (available: api_base, webhook_secret_file)"
        );
        assert!(
            WITH_OPTIONS
                .check_keys(&options(&[("api_base", "/api/v3")]))
                .is_ok()
        );
    }

    #[test]
    fn a_dialect_without_options_says_so() {
        let e = DialectSpec::of(DialectName::Gerrit)
            .check_keys(&options(&[("trust", "1h")]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "options.trust: the gerrit dialect takes no options"
        );
    }
}
