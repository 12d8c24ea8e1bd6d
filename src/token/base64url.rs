//! Strict base64url without padding (RFC 7515 §2, RFC 4648 §5), decoded four characters at a
//! time: a JWS's three segments on every signature check.
//!
//! Strict as the `base64` crate's `URL_SAFE_NO_PAD` is (and jwt-compact's decoder): only the
//! 64 characters of the URL-safe alphabet, no `=`, no length of 4n+1, and no bits set beyond
//! the data in the last character, so one byte string has one spelling (a token whose
//! signature is spelt two ways would be two tokens with one signature). The tests hold the
//! two decoders to the same answers.
//!
//! Why not the crate: a distinct RS256 token decodes about 550 characters, and the crate's
//! general decoder (any alphabet, any padding mode, eight characters a step with its
//! bookkeeping) was the largest single function of a cache miss in V8 (`make wasm-cost`:
//! 0.44 of 5.1 us). Here a step is four table reads, one combined validity bit, and three
//! bytes written; an invalid character is found once, after the loop, not per character.

/// For each of a quad's four places, every byte's contribution to the three bytes it decodes
/// to, already shifted into place and read little-endian (wasm stores little-endian words and
/// has no byte swap): a quad decodes to `A[a] | B[b] | C[c] | D[d]`, with no shifts. A byte
/// outside the alphabet sets the word's top bit, which no valid quad sets.
const INVALID: u32 = 0x8000_0000;
// Evaluated at compile time: an index out of range would fail the build, not a request.
#[allow(clippy::indexing_slicing)]
const fn place_table(place: u32) -> [u32; 256] {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut table = [INVALID; 256];
    let mut value = 0;
    while value < 64 {
        // The quad's 24 bits, big-endian: place 0 is bits 23-18, place 3 bits 5-0.
        let bits = (value as u32) << (18 - 6 * place);
        // As the three bytes land in memory: the first (bits 23-16) at the lowest address.
        let little = (bits >> 16) | (bits & 0xff00) | ((bits & 0xff) << 16);
        table[alphabet[value] as usize] = little;
        value += 1;
    }
    table
}
const PLACES: [[u32; 256]; 4] = [
    place_table(0),
    place_table(1),
    place_table(2),
    place_table(3),
];

/// What `byte` at `place` (0-3) of a quad contributes (a `u8` indexes any of the 256 entries).
fn place(place: usize, byte: u8) -> u32 {
    PLACES
        .get(place)
        .and_then(|table| table.get(usize::from(byte)))
        .copied()
        .unwrap_or(INVALID)
}

/// The decoded bytes, or `None` for anything `URL_SAFE_NO_PAD.decode` refuses.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let input = text.as_bytes();
    let len = input.len() / 4 * 3
        + match input.len() % 4 {
            0 => 0,
            1 => return None, // six bits: not one byte
            n => n - 1,
        };
    // One byte of room past the end: each quad writes a four-byte word, whose last byte the
    // next quad (or the tail, or the final truncate) overwrites.
    let mut out = vec![0u8; len + 1];
    // Every word ORed together: one test after the loop says whether any byte was invalid.
    let mut seen = 0u32;
    let mut at = 0;
    let (quads, tail) = input.as_chunks::<4>();
    for &[a, b, c, d] in quads {
        let word = place(0, a) | place(1, b) | place(2, c) | place(3, d);
        seen |= word;
        out.get_mut(at..at + 4)?
            .copy_from_slice(&word.to_le_bytes());
        at += 3;
    }
    // The last two or three characters: one or two bytes, and bits beyond them that must be
    // zero (else the same bytes have a second spelling).
    let mut word = 0u32;
    for (at_place, &byte) in tail.iter().enumerate() {
        word |= place(at_place, byte);
    }
    seen |= word;
    let [first, second, third, _] = word.to_le_bytes();
    let (bytes, stray): (&[u8], u8) = match tail.len() {
        2 => (&[first], second),
        3 => (&[first, second], third),
        _ => (&[], 0),
    };
    if seen & INVALID != 0 || stray != 0 {
        return None;
    }
    out.get_mut(at..at + bytes.len())?.copy_from_slice(bytes);
    out.truncate(len);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::xorshift;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn crate_decode(text: &str) -> Option<Vec<u8>> {
        URL_SAFE_NO_PAD.decode(text).ok()
    }

    /// Every string of up to four characters over an alphabet with each kind of edge: both
    /// ends of each range, the two URL-safe characters and their standard twins, padding,
    /// a dot, a space, a non-ASCII character, and last characters with and without stray bits.
    #[test]
    fn agrees_with_the_crate_on_every_short_string() {
        let alphabet = [
            "A", "B", "Q", "Z", "a", "g", "w", "x", "z", "0", "9", "-", "_", "+", "/", "=", ".",
            " ", "é", "\0",
        ];
        let mut texts = vec![String::new()];
        let mut previous = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = previous
                .iter()
                .flat_map(|text| alphabet.iter().map(move |c| format!("{text}{c}")))
                .collect();
            texts.extend(longer.iter().cloned());
            previous = longer;
        }
        for text in &texts {
            assert_eq!(decode(text), crate_decode(text), "{text:?}");
        }
        assert!(texts.iter().any(|text| decode(text).is_some()));
    }

    /// Random bytes round-trip, and random corruptions of their encodings (a character
    /// replaced by any ASCII byte or by a two-byte character, a character dropped or added)
    /// are judged as the crate judges them.
    #[test]
    fn agrees_with_the_crate_on_random_encodings_and_their_corruptions() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for round in 0..20_000 {
            let len = (next() % 300) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let encoded = URL_SAFE_NO_PAD.encode(&bytes);
            assert_eq!(decode(&encoded), Some(bytes), "round {round}");
            // The encoding is ASCII, so every index is a character boundary.
            let mut corrupt = encoded;
            let at = (next() as usize) % (corrupt.len() + 1);
            let ascii = char::from((next() as u8) & 0x7f);
            match next() % 4 {
                0 if at < corrupt.len() => {
                    corrupt.replace_range(at..=at, ascii.encode_utf8(&mut [0; 4]))
                }
                1 if at < corrupt.len() => corrupt.replace_range(at..=at, "é"),
                2 if at < corrupt.len() => {
                    corrupt.remove(at);
                }
                _ => corrupt.insert(at, ascii),
            }
            assert_eq!(decode(&corrupt), crate_decode(&corrupt), "{corrupt:?}");
        }
    }

    #[test]
    fn refuses_padding_stray_bits_and_a_lone_character() {
        assert_eq!(decode("_w"), Some(vec![0xff]));
        assert_eq!(decode("_x"), None, "stray bits: the same byte spelt twice");
        assert_eq!(decode("_w=="), None);
        assert_eq!(decode("AAAAA"), None);
        assert_eq!(decode("AA/A"), None, "the standard alphabet's twin");
        assert_eq!(decode(""), Some(Vec::new()));
    }
}
