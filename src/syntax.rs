//! RFC 9110 syntax helpers shared by the rules loader, the preflight decision and the proxy.

use http::HeaderValue;

/// RFC 9110 §5.6.2: `tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
/// "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA`.
const fn build_tchar_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
}

static TCHAR: [bool; 256] = build_tchar_table();

/// `token = 1*tchar` (RFC 9110 §5.6.2).
pub fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| TCHAR[usize::from(b)])
}

/// Strips optional whitespace (SP / HTAB, RFC 9110 §5.6.3) from both ends.
pub fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The items of one comma-separated list value (RFC 9110 5.6.1: `#element`), OWS trimmed,
/// empty items skipped (a recipient must accept and ignore them).
#[inline]
pub fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|item| !item.is_empty())
}

/// The items of every line of a list-valued field, in order (RFC 9110 5.3: several field
/// lines of one name mean their values joined with commas).
#[inline]
pub fn field_items<'a>(
    lines: impl IntoIterator<Item = &'a HeaderValue>,
) -> impl Iterator<Item = &'a [u8]> {
    line_items(lines.into_iter().map(HeaderValue::as_bytes))
}

/// [`field_items`] over raw line values.
pub fn line_items<'a>(lines: impl Iterator<Item = &'a [u8]>) -> impl Iterator<Item = &'a [u8]> {
    lines.flat_map(list_items)
}

/// A byte of an RFC 3986 `reg-name` (3.2.2): `unreserved`, `pct-encoded` (its `%` and hex
/// digits) or `sub-delims`.
#[inline]
pub fn is_reg_name(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

/// A byte of an RFC 3986 `pchar` (3.3): a `reg-name` byte, `:` or `@`.
#[inline]
pub fn is_pchar(b: u8) -> bool {
    is_reg_name(b) || b == b':' || b == b'@'
}

/// RFC 9112 3.2 / RFC 3986 3.2.2-3.2.3: `uri-host [ ":" port ]`, where `uri-host` is an
/// IP-literal in brackets or a reg-name (unreserved, percent-encoded and sub-delims bytes;
/// IPv4 addresses are reg-names by syntax). Anything else (a space, `@` userinfo, a path,
/// an empty host, a port that is not at most five digits) is not a valid `Host`.
pub fn is_valid_authority(authority: &[u8]) -> bool {
    let (host, port) = if authority.first() == Some(&b'[') {
        let Some(close) = authority.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &authority[1..close];
        let ok = !literal.is_empty()
            && literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        if !ok {
            return false;
        }
        (&authority[..=close], &authority[close + 1..])
    } else {
        match authority.iter().position(|&b| b == b':') {
            Some(colon) => (&authority[..colon], &authority[colon..]),
            None => (authority, &authority[authority.len()..]),
        }
    };
    let host_ok =
        host.first() == Some(&b'[') || (!host.is_empty() && host.iter().all(|&b| is_reg_name(b)));
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(is_token(b"PATCH"));
        assert!(is_token(b"x-api-key"));
        assert!(is_token(b"*"));
        assert!(!is_token(b""));
        assert!(!is_token(b"Bad method"));
        assert!(!is_token(b"a,b"));
        assert!(!is_token("é".as_bytes()));
        assert!(!is_token(b"a\0"));
    }

    #[test]
    fn splits_lists_like_rfc_9110() {
        let items: Vec<&[u8]> = list_items(b" a,, b ,\t,c").collect();
        assert_eq!(items, [&b"a"[..], b"b", b"c"]);
        let lines = [
            HeaderValue::from_static("x, y"),
            HeaderValue::from_static(",z"),
        ];
        let items: Vec<&[u8]> = field_items(&lines).collect();
        assert_eq!(items, [&b"x"[..], b"y", b"z"]);
    }

    #[test]
    fn authorities() {
        for good in [
            &b"api.example.com"[..],
            b"api.example.com:8443",
            b"127.0.0.1",
            b"[::1]:8080",
            b"x.test:",
        ] {
            assert!(is_valid_authority(good), "{good:?}");
        }
        for bad in [
            &b""[..],
            b"a b@c/d",
            b"user@host",
            b"host/path",
            b"host:99999999",
            b":80",
            b"[::1",
            b"[zz]",
            b"host:8a",
        ] {
            assert!(!is_valid_authority(bad), "{bad:?}");
        }
    }

    #[test]
    fn trims_only_ows() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b"\nx"), b"\nx");
    }
}
