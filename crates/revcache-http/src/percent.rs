//! Percent-decoding of URL parts, strict for what operators type (admin
//! parameters: a bad escape is an error) and lenient for what upstream
//! paths carry (a bad escape stays as it is).

fn hex_at(bytes: &[u8], i: usize) -> Option<u8> {
    let h = bytes.get(i + 1..i + 3)?;
    // `from_str_radix` alone would take a sign: `%+1` is not an escape.
    if !h.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
}

/// `None` on a bad escape or a result that is not UTF-8. `+` stays `+`.
pub fn decode_strict(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(hex_at(bytes, i)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Decodes what it can; bad escapes and invalid UTF-8 are kept or replaced.
pub fn decode_lossy(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex_at(bytes, i)) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_decoding_refuses_bad_escapes_and_lossy_keeps_them() {
        assert_eq!(decode_strict("/a%3Fb%3D1").as_deref(), Some("/a?b=1"));
        assert_eq!(decode_strict("a+b").as_deref(), Some("a+b"));
        assert_eq!(decode_strict("%zz"), None);
        assert_eq!(decode_strict("%4"), None);
        assert_eq!(decode_strict("%ff"), None);
        assert_eq!(decode_strict("%+1"), None);
        assert_eq!(decode_lossy("%+1"), "%+1");
        assert_eq!(decode_lossy("infra%2Fci~42"), "infra/ci~42");
        assert_eq!(decode_lossy("100%"), "100%");
    }
}
