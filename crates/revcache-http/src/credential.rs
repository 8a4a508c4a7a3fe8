//! Credentials: the parts of a request that identify a caller
//! (`Authorization`, and configured cookies and headers), turned into a
//! partition by the keyed hash. The credential itself is never kept.

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use revcache_core::{Partition, PartitionKey};

use crate::settings::PartitionSettings;

/// The caller's partition, or `None` for an anonymous request.
pub fn partition_of(
    headers: &HeaderMap,
    settings: &PartitionSettings,
    key: &PartitionKey,
) -> Option<Partition> {
    let mut material: Vec<&[u8]> = Vec::new();
    for v in headers.get_all(AUTHORIZATION) {
        material.push(v.as_bytes());
    }
    for name in &settings.headers {
        for v in headers.get_all(name) {
            material.push(name.as_str().as_bytes());
            material.push(v.as_bytes());
        }
    }
    if !settings.cookies.is_empty() {
        for line in headers.get_all(COOKIE) {
            let Ok(line) = line.to_str() else { continue };
            for pair in line.split(';') {
                let Some((name, value)) = pair.split_once('=') else {
                    continue;
                };
                let name = name.trim();
                if settings.cookies.iter().any(|c| c == name) {
                    material.push(name.as_bytes());
                    material.push(value.trim().as_bytes());
                }
            }
        }
    }
    (!material.is_empty()).then(|| key.partition(&material))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn authorization_and_configured_cookies_select_a_partition() {
        let key = PartitionKey::ephemeral().unwrap();
        let settings = PartitionSettings {
            cookies: vec!["session".into()],
            headers: vec![],
        };
        let mut h = HeaderMap::new();
        assert_eq!(partition_of(&h, &settings, &key), None);
        h.insert(COOKIE, HeaderValue::from_static("theme=dark"));
        assert_eq!(partition_of(&h, &settings, &key), None);
        h.insert(COOKIE, HeaderValue::from_static("theme=dark; session=abc"));
        let a = partition_of(&h, &settings, &key).unwrap();
        h.insert(COOKIE, HeaderValue::from_static("session=xyz; theme=dark"));
        assert_ne!(partition_of(&h, &settings, &key).unwrap(), a);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert!(partition_of(&h, &settings, &key).is_some());
    }
}
