//! RFC 3986 percent-encoding: every byte but the unreserved characters (`A-Z a-z 0-9 - . _ ~`)
//! as `%XX` (uppercase hex). Safe as an `application/x-www-form-urlencoded` value (introspection
//! and RFC 7009 bodies), in a query (the list's `since`) and as a segment of an etcd key (the
//! revocation store's layout). Decoding differs per place (`+` is a space only in forms), so it
//! stays with each reader.

/// `value`, percent-encoded.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    encode_into(&mut out, value);
    out
}

/// Appends `value`, percent-encoded, to `out`.
pub fn encode_into(out: &mut String, value: &str) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            for nibble in [byte >> 4, byte & 0x0f] {
                let digit = DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0');
                out.push(char::from(digit));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreserved_characters_stay() {
        assert_eq!(encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(
            encode("a b+c/d%e,f;g=\"h\""),
            "a%20b%2Bc%2Fd%25e%2Cf%3Bg%3D%22h%22"
        );
        assert_eq!(encode("ü"), "%C3%BC");
        assert_eq!(encode(""), "");
    }
}
