//! Percent-decoding of URL parts, strict for what operators type (admin
//! parameters: a bad escape is an error) and lenient for what upstream
//! paths carry (a bad escape stays as it is). The decoding itself is the
//! `percent-encoding` crate's; this module owns only the strict check.

use percent_encoding::percent_decode_str;

/// `None` on a bad escape or a result that is not UTF-8. `+` stays `+`.
pub fn decode_strict(s: &str) -> Option<String> {
    // `percent_decode_str` keeps a bad escape as it is: refuse it first.
    // An escape is `%` and two hex digits (a sign, as in `%+1`, is not one).
    let well_formed = s.split('%').skip(1).all(|rest| {
        rest.as_bytes()
            .get(..2)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_decode_str(s).decode_utf8().ok().map(String::from)
}

/// Decodes what it can; bad escapes and invalid UTF-8 are kept or replaced.
pub fn decode_lossy(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_decoding_refuses_bad_escapes_and_lossy_keeps_them() {
        assert_eq!(decode_strict("/a%3Fb%3D1").as_deref(), Some("/a?b=1"));
        assert_eq!(decode_strict("a+b").as_deref(), Some("a+b"));
        assert_eq!(decode_strict("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(decode_strict("%zz"), None);
        assert_eq!(decode_strict("%4"), None);
        assert_eq!(decode_strict("%%41"), None);
        assert_eq!(decode_strict("%ff"), None);
        assert_eq!(decode_lossy("infra%2Fci~42"), "infra/ci~42");
        assert_eq!(decode_lossy("100%"), "100%");
        assert_eq!(decode_lossy("%zz%41"), "%zzA");
        assert_eq!(decode_lossy("%ff"), "\u{FFFD}");
    }

    /// `u8::from_str_radix("+1", 16)` is `Ok(1)`: a decoder built on it
    /// alone took `%+1` for the byte 0x01. A sign is not a hex digit, so
    /// `%+1` is a bad escape like `%zz`: refused strictly, kept leniently.
    #[test]
    fn a_sign_is_not_a_hex_digit() {
        assert_eq!(decode_strict("%+1"), None);
        assert_eq!(decode_strict("%-1"), None);
        assert_eq!(decode_lossy("%+1"), "%+1");
        assert_eq!(decode_lossy("a%+1b%-fc"), "a%+1b%-fc");
    }
}
