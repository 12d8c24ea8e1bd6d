//! The path (`providers.corp.issuer`, `rules[1].match`) of the value at a position in a JSON
//! text. Config errors name their key with it: serde_json reports where an error is (line
//! and column) but not under which key, and tracking keys during deserialization would cost
//! the filter tens of kilobytes. Only runs when a configuration is rejected.

enum Frame {
    Object {
        key: Option<String>,
        expecting_key: bool,
    },
    Array {
        index: usize,
    },
}

/// The path of the innermost value open at `line`/`column` (1-based, as serde_json reports).
pub fn path_at(text: &str, line: usize, column: usize) -> String {
    let offset = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum::<usize>()
        + column;
    render(&frames_open_at(text, offset))
}

/// The objects and arrays open before byte `offset`, outermost first, each with the key or
/// index it is at.
fn frames_open_at(text: &str, offset: usize) -> Vec<Frame> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        if at >= offset {
            break;
        }
        match c {
            '{' => stack.push(Frame::Object {
                key: None,
                expecting_key: true,
            }),
            '[' => stack.push(Frame::Array { index: 0 }),
            '}' | ']' => {
                stack.pop();
            }
            ',' => match stack.last_mut() {
                Some(Frame::Array { index }) => *index += 1,
                Some(Frame::Object { expecting_key, .. }) => *expecting_key = true,
                None => {}
            },
            ':' => {
                if let Some(Frame::Object { expecting_key, .. }) = stack.last_mut() {
                    *expecting_key = false;
                }
            }
            '"' => {
                let string = read_string(&mut chars);
                if let Some(Frame::Object {
                    key,
                    expecting_key: true,
                }) = stack.last_mut()
                {
                    *key = Some(string);
                }
            }
            _ => {}
        }
    }
    stack
}

/// The rest of a string literal after its opening quote, escapes taken literally (`\"` is
/// `"`; a `\n` escape is `n`, which no config key has).
fn read_string(chars: &mut impl Iterator<Item = (usize, char)>) -> String {
    let mut string = String::new();
    while let Some((_, c)) = chars.next() {
        match c {
            '"' => break,
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    string.push(escaped);
                }
            }
            _ => string.push(c),
        }
    }
    string
}

/// `providers.corp.issuer`, `rules[1].match`: keys joined by dots, indices in brackets.
fn render(stack: &[Frame]) -> String {
    let mut path = String::new();
    for frame in stack {
        match frame {
            Frame::Object { key: Some(key), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object { key: None, .. } => {}
            Frame::Array { index } => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_end_of(text: &str, marker: &str) -> String {
        let column = text.find(marker).unwrap() + marker.len();
        path_at(text, 1, column)
    }

    #[test]
    fn nested_keys_and_indices() {
        let text = r#"{"providers":{"corp":{"issuer":"i","clock_skew_seconds":"60"}},"rules":[{"match":{}},{"match":{"prefix":7}}]}"#;
        assert_eq!(
            at_end_of(text, r#""60""#),
            "providers.corp.clock_skew_seconds"
        );
        assert_eq!(at_end_of(text, r#""prefix":7"#), "rules[1].match.prefix");
        assert_eq!(at_end_of(text, r#"{"match":{}"#), "rules[0].match");
    }

    #[test]
    fn escaped_quotes_and_lines() {
        let text = "{\n  \"a\\\"b\": {\n    \"c\": 1\n  }\n}";
        assert_eq!(path_at(text, 3, 9), "a\"b.c");
    }
}
