//! The words after a command: `--name value` (or `--name=value`) options, `--switch`es and
//! operands; `--` ends the options. Each command names the options it takes.

use super::hint::suggest;
use super::CliError;

#[derive(Debug, Default)]
pub struct Args {
    options: Vec<(String, String)>,
    switches: Vec<String>,
    pub operands: Vec<String>,
}

/// What a command takes: options with a value, and switches.
pub struct Spec<'a> {
    pub options: &'a [&'a str],
    pub switches: &'a [&'a str],
}

impl Spec<'_> {
    pub fn parse(&self, words: &[String]) -> Result<Args, CliError> {
        let mut args = Args::default();
        let mut words = words.iter();
        while let Some(word) = words.next() {
            if word == "--" {
                args.operands.extend(words.cloned());
                break;
            }
            let Some(name) = word.strip_prefix("--") else {
                // `-` alone is an operand: standard input.
                args.operands.push(word.clone());
                continue;
            };
            let (name, inline) = match name.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (name, None),
            };
            if self.switches.contains(&name) {
                if inline.is_some() {
                    return Err(CliError::Usage(format!("--{name} takes no value")));
                }
                args.switches.push(name.to_owned());
            } else if self.options.contains(&name) {
                let value = match inline {
                    Some(value) => value,
                    None => words
                        .next()
                        .cloned()
                        .ok_or_else(|| CliError::Usage(format!("--{name} needs a value")))?,
                };
                args.options.push((name.to_owned(), value));
            } else {
                let known = self.options.iter().chain(self.switches).copied();
                return Err(CliError::Usage(match suggest(name, known) {
                    Some(near) => format!("unknown option --{name} (did you mean --{near}?)"),
                    None => format!("unknown option --{name}"),
                }));
            }
        }
        Ok(args)
    }
}

impl Args {
    /// An option given at most once, read as a time (see `time::parse_time`) relative to `now`.
    pub fn time(&self, name: &str, now: i64) -> Result<Option<i64>, CliError> {
        self.one(name)?
            .map(|t| {
                super::time::parse_time(t, now)
                    .map_err(|e| CliError::Usage(format!("--{name}: {e}")))
            })
            .transpose()
    }

    /// An option given at most once.
    pub fn one<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, CliError> {
        let mut values = self.all(name);
        match (values.next(), values.next()) {
            (value, None) => Ok(value),
            (Some(_), Some(_)) => Err(CliError::Usage(format!("--{name} is given twice"))),
            (None, Some(_)) => Ok(None),
        }
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.options
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    /// Options in the order given, for commands where order matters (`revoke`).
    pub fn in_order(&self) -> impl Iterator<Item = (&str, &str)> {
        self.options.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Exactly one operand, named `what` in the error.
    pub fn operand(&self, what: &str) -> Result<&str, CliError> {
        match self.operands.as_slice() {
            [one] => Ok(one),
            [] => Err(CliError::Usage(format!("{what} is missing"))),
            _ => Err(CliError::Usage(format!("one {what} only"))),
        }
    }

    pub fn no_operands(&self) -> Result<(), CliError> {
        match self.operands.first() {
            None => Ok(()),
            // Not echoed: a stray word may well be a token (`revoke --list f TOKEN`).
            Some(extra) => Err(CliError::Usage(format!(
                "unexpected argument ({} characters){}",
                extra.chars().count(),
                if self.operands.len() > 1 {
                    format!(" and {} more", self.operands.len() - 1)
                } else {
                    String::new()
                }
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_owned).collect()
    }

    const SPEC: Spec = Spec {
        options: &["config", "aud"],
        switches: &["remove"],
    };

    #[test]
    fn options_switches_and_operands() {
        let args = SPEC
            .parse(&words(
                "--config c.json --aud a --aud=b --remove TOKEN -- --not-an-option",
            ))
            .unwrap();
        assert_eq!(args.one("config").unwrap(), Some("c.json"));
        assert_eq!(args.all("aud").collect::<Vec<_>>(), ["a", "b"]);
        assert!(args.switch("remove"));
        assert_eq!(args.operands, ["TOKEN", "--not-an-option"]);
        assert!(args.one("aud").is_err());
        assert_eq!(args.one("missing").unwrap(), None);
    }

    #[test]
    fn usage_errors_say_what() {
        let err = |text| match SPEC.parse(&words(text)) {
            Err(CliError::Usage(why)) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            err("--confg x"),
            "unknown option --confg (did you mean --config?)"
        );
        assert_eq!(err("--config"), "--config needs a value");
        assert_eq!(err("--remove=yes"), "--remove takes no value");
    }
}
