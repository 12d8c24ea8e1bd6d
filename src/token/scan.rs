//! Finding an ASCII byte in a token, eight bytes at a time.
//!
//! Every request scans its credential for commas (Envoy joins repeated headers with them) and
//! every verified token for its two dots: about 700 bytes each for an RS256 token. `core`'s
//! `memchr` reads `usize` words, four bytes on wasm32, two a pass, and searches byte by byte
//! up to alignment and within the pass that holds the match. wasm has 64-bit integers
//! natively: one `u64` a pass, and the match's place read from the word, is fewer operations
//! in V8 (natively, on a 64-bit target, `memchr` already reads eight-byte words).

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The position of the first `needle` in `haystack`.
pub fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    let pattern = ONES * u64::from(needle);
    let (words, tail) = haystack.as_chunks::<8>();
    let mut offset = 0;
    for &bytes in words {
        // A byte of `x` is zero where the word has `needle`. `(x - ONES) & !x & HIGHS` sets
        // the high bit of every zero byte, and may set it spuriously only in bytes above a
        // zero byte (the borrow runs upwards), so the lowest bit set is always a real match:
        // read little-endian, the lowest byte is the first in memory.
        let x = u64::from_le_bytes(bytes) ^ pattern;
        let zeros = x.wrapping_sub(ONES) & !x & HIGHS;
        if zeros != 0 {
            return Some(offset + (zeros.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    tail.iter().position(|&b| b == needle).map(|at| offset + at)
}

/// `text.split(separator)` for an ASCII separator, found with [`find_byte`]. An ASCII byte is
/// never part of a multi-byte character, so every piece is a `str` of its own. A byte that
/// is not ASCII could be part of one, so it is no separator here: the text is one piece
/// (callers pass ASCII constants).
pub fn split_ascii(text: &str, separator: u8) -> impl Iterator<Item = &str> {
    let ascii = separator.is_ascii();
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        let found = if ascii {
            find_byte(current.as_bytes(), separator)
        } else {
            None
        };
        match found {
            Some(at) => {
                rest = current.get(at + 1..);
                current.get(..at)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string of up to `len` characters over `alphabet`.
    fn all_strings(alphabet: &[&str], len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn finds_the_first_byte_as_position_does() {
        // Bytes next to the needle's value, the high bit, and the needle in every lane.
        let alphabet = [b',', b'.', b'-', b'/', 0x00, 0x80, 0xac, 0xff, b'a'];
        for len in 0..=19 {
            for seed in 0..400u32 {
                let haystack: Vec<u8> = (0..len)
                    .map(|i| {
                        let mix = seed.wrapping_mul(2_654_435_761).rotate_left(i as u32 * 3);
                        alphabet[(mix as usize + i) % alphabet.len()]
                    })
                    .collect();
                for needle in [b',', b'.', 0x00, 0x80, 0xff] {
                    assert_eq!(
                        find_byte(&haystack, needle),
                        haystack.iter().position(|&b| b == needle),
                        "{haystack:?} {needle}"
                    );
                }
            }
        }
    }

    #[test]
    fn finds_a_needle_in_every_place_of_a_long_haystack() {
        // A borrow from a byte below must not hide or invent a match above it: the byte
        // before the needle is one more than it (the `x - ONES` step borrows through it).
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 700] {
            let clean = vec![b'A'; len];
            assert_eq!(find_byte(&clean, b','), None);
            for at in 0..len {
                let mut haystack = clean.clone();
                haystack[at] = b',';
                if at > 0 {
                    haystack[at - 1] = b'-';
                }
                assert_eq!(find_byte(&haystack, b','), Some(at), "len {len} at {at}");
                haystack[len - 1] = b',';
                assert_eq!(
                    find_byte(&haystack, b','),
                    Some(at),
                    "len {len} at {at}, last too"
                );
            }
        }
    }

    #[test]
    fn a_byte_that_is_not_ascii_splits_nothing() {
        // 0xc3 is the first byte of "é": cutting there would not leave `str`s.
        let pieces: Vec<&str> = split_ascii("é,a", 0xc3).collect();
        assert_eq!(pieces, ["é,a"]);
    }

    #[test]
    fn splits_as_str_split_does() {
        for text in all_strings(&[",", ".", "a", "é", " "], 6) {
            for separator in [b',', b'.'] {
                let ours: Vec<&str> = split_ascii(&text, separator).collect();
                let std: Vec<&str> = text.split(separator as char).collect();
                assert_eq!(ours, std, "{text:?}");
            }
        }
    }
}
