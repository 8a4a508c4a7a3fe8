//! The invariants of the `config` fuzz target (`fuzz/` at the repository
//! root): the TOML config file, as `revcache serve` and `revcache check`
//! read it. Not part of the API.

use crate::cli::ServeArgs;
use crate::config::{ConfigFile, Purpose, parse_duration, parse_size, resolve};

/// Never panics; a config is refused with an error that says something,
/// or resolves to settings the router accepts or refuses with an error;
/// resolving is deterministic. Configs naming a file (`*_file`) are only
/// parsed: resolving them reads the file.
pub fn check_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = (parse_size(text), parse_duration(text));
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        assert!(toml::from_str::<ConfigFile>(text).is_err());
        return;
    };
    if names_a_file(&table) {
        let _ = toml::from_str::<ConfigFile>(text);
        return;
    }
    for purpose in [Purpose::Serve, Purpose::Maintenance] {
        let resolved = toml::from_str::<ConfigFile>(text)
            .map_err(|e| e.to_string())
            .and_then(|file| {
                resolve(file, &ServeArgs::default(), purpose).map_err(|e| format!("{e:#}"))
            });
        let again = toml::from_str::<ConfigFile>(text)
            .map_err(|e| e.to_string())
            .and_then(|file| {
                resolve(file, &ServeArgs::default(), purpose).map_err(|e| format!("{e:#}"))
            });
        match (resolved, again) {
            (Err(e), Err(e2)) => {
                assert!(!e.trim().is_empty(), "an empty error");
                assert_eq!(e, e2);
            }
            (Ok(r), Ok(r2)) => {
                assert!(r.settings == r2.settings, "resolved settings differ");
                if purpose == Purpose::Serve {
                    let _ = revcache_http::Router::new(&r.settings.routes, &r.settings.limits);
                }
            }
            _ => panic!("resolving the same config twice disagreed"),
        }
    }
}

/// Whether any key, at any depth, names a file to read.
fn names_a_file(table: &toml::Table) -> bool {
    table
        .iter()
        .any(|(key, value)| key.ends_with("_file") || value_names_a_file(value))
}

fn value_names_a_file(value: &toml::Value) -> bool {
    match value {
        toml::Value::Table(t) => names_a_file(t),
        toml::Value::Array(items) => items.iter().any(value_names_a_file),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_seed_corpus_keeps_its_invariants() {
        revcache_core::fuzzing::replay("config", check_config);
    }
}
