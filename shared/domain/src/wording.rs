//! What a client reads when serde refuses its input: the field at fault and a plain sentence —
//! never a Rust type name ("expected u64"), a parser's phrase ("invalid digit found in string"),
//! or serde_json's position ("at line 1 column 9"). One wording for HTTP bodies, query strings and
//! socket frames.

use crate::InputError;

impl InputError {
    /// The error serde gave for the value at `path` (serde_path_to_error's, `.` for the top).
    pub fn from_serde(path: &str, said: &str) -> Self {
        let said = said.lines().next().unwrap_or(said);
        let said = said.rfind(" at line ").map_or(said, |index| &said[..index]);
        // serde_path_to_error's path for the input itself: `.`, or `?` when it could not tell.
        let top = matches!(path, "" | "." | "?");
        // The path ends at an unknown key itself, but not at a missing one.
        let at = |name: &str| match path {
            _ if top => name.to_owned(),
            _ if path == name || path.ends_with(&format!(".{name}")) => path.to_owned(),
            _ => format!("{path}.{name}"),
        };
        if let Some(name) = quoted_after(said, "missing field ") {
            return Self::invalid(at(name), "is required");
        }
        if let Some(name) = quoted_after(said, "unknown field ") {
            let expected = said.split_once(", expected ").map(|(_, rest)| rest.replace('`', "")).unwrap_or_default();
            let message = if expected.is_empty() || expected == "nothing" {
                "unknown field: none are accepted here".to_owned()
            } else {
                format!("unknown field; expected {expected}")
            };
            return Self::invalid(at(name), message);
        }
        let field = if top { "body" } else { path };
        Self::invalid(field, plain(said))
    }
}

/// The name in backticks right after `prefix`, if `said` starts with it.
fn quoted_after<'a>(said: &'a str, prefix: &str) -> Option<&'a str> {
    said.strip_prefix(prefix)?.strip_prefix('`')?.split('`').next()
}

/// serde's sentence in a client's words.
fn plain(said: &str) -> String {
    match said {
        "invalid digit found in string" => return "must be a whole number".to_owned(),
        "cannot parse integer from empty string" | "cannot parse float from empty string" => {
            return "must not be empty".to_owned();
        }
        "number too large to fit in target type" | "number too small to fit in target type" => {
            return "is out of range".to_owned();
        }
        "invalid float literal" => return "must be a number".to_owned(),
        "provided string was not `true` or `false`" => return "must be true or false".to_owned(),
        _ => {}
    }
    if let Some(message) = out_of_range(said) {
        return message;
    }
    let mut words: Vec<String> = said.split(' ').map(str::to_owned).collect();
    let mut index = 0;
    while index < words.len() {
        let word = words[index].trim_end_matches([',', '.']);
        if (word == "struct" || word == "enum") && index + 1 < words.len() {
            let kind = if word == "struct" { "an object" } else { "one of the documented values" };
            words.splice(index..index + 2, [kind.to_owned()]);
            // "… with 3 elements": how serde counts a struct's fields; meaningless to a client.
            if words.get(index + 1).is_some_and(|w| w == "with")
                && words.get(index + 3).is_some_and(|w| w.starts_with("element"))
            {
                words.drain(index + 1..index + 4);
            }
        } else if let Some(kind) = number_kind(word) {
            let tail = &words[index][word.len()..];
            words[index] = format!("{}{tail}", kind.described());
        }
        index += 1;
    }
    words.join(" ")
}

/// "invalid value: integer `-1`, expected u64" and "invalid type: floating point `1e23`,
/// expected u64": a number of the right sort but outside what the field holds.
fn out_of_range(said: &str) -> Option<String> {
    let (value, expected) = said.split_once("`, expected ")?;
    let kind = number_kind(expected)?;
    if let Some(integer) = value.strip_prefix("invalid value: integer `") {
        let integer: i128 = integer.parse().ok()?;
        return Some(kind.out_of_range(integer as f64));
    }
    let float: f64 = value.strip_prefix("invalid type: floating point `")?.parse().ok()?;
    if kind.integral && float.fract() == 0.0 && !kind.holds(float) {
        return Some(kind.out_of_range(float));
    }
    Some(format!("must be {}, not {float}", kind.described()))
}

/// A Rust number type as a client knows it: whole or not, and its bounds.
#[derive(Clone, Copy)]
struct NumberKind {
    integral: bool,
    min: i128,
    max: u128,
}

fn number_kind(name: &str) -> Option<NumberKind> {
    let (min, max) = match name {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" | "usize" => (0, u64::MAX.into()),
        "i8" => (i8::MIN.into(), i8::MAX as u128),
        "i16" => (i16::MIN.into(), i16::MAX as u128),
        "i32" => (i32::MIN.into(), i32::MAX as u128),
        "i64" | "isize" => (i64::MIN.into(), i64::MAX as u128),
        "f32" | "f64" => return Some(NumberKind { integral: false, min: 0, max: 0 }),
        _ => return None,
    };
    Some(NumberKind { integral: true, min, max })
}

impl NumberKind {
    fn described(self) -> &'static str {
        match (self.integral, self.min >= 0) {
            (false, _) => "a number",
            (true, true) => "a whole number, 0 or more",
            (true, false) => "a whole number",
        }
    }

    fn holds(self, value: f64) -> bool {
        (self.min as f64..=self.max as f64).contains(&value)
    }

    fn out_of_range(self, value: f64) -> String {
        if value < 0.0 && self.min >= 0 {
            "must not be negative".to_owned()
        } else if value < self.min as f64 {
            format!("is out of range: at least {}", self.min)
        } else {
            format!("is out of range: at most {}", self.max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worded(path: &str, said: &str) -> (String, String) {
        match InputError::from_serde(path, said) {
            InputError::Invalid { field, message } | InputError::TooLarge { field, message } => (field, message),
        }
    }

    #[test]
    fn no_rust_type_or_parser_phrase_reaches_a_client() {
        let cases = [
            (
                "limit",
                "invalid type: string \"x\", expected u64",
                "invalid type: string \"x\", expected a whole number, 0 or more",
            ),
            ("limit", "invalid digit found in string", "must be a whole number"),
            ("count", "invalid value: integer `-1`, expected usize", "must not be negative"),
            ("max_tokens", "invalid value: integer `70000`, expected u16", "is out of range: at most 65535"),
            (
                "after_seq",
                "invalid type: floating point `1e23`, expected u64",
                "is out of range: at most 18446744073709551615",
            ),
            ("after_seq", "number too large to fit in target type", "is out of range"),
            (
                "temperature",
                "invalid type: string \"hot\", expected f32 at line 1 column 20",
                "invalid type: string \"hot\", expected a number",
            ),
            (
                "max_tokens",
                "invalid type: floating point `1.5`, expected u32",
                "must be a whole number, 0 or more, not 1.5",
            ),
            (
                "usage",
                "invalid type: sequence, expected struct Usage with 3 elements",
                "invalid type: sequence, expected an object",
            ),
            (
                "role",
                "unknown variant `robot`, expected enum Role",
                "unknown variant `robot`, expected one of the documented values",
            ),
        ];
        for (path, said, expected) in cases {
            assert_eq!(worded(path, said), (path.to_owned(), expected.to_owned()), "{said}");
        }
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        assert_eq!(worded(".", "missing field `content` at line 1 column 2"), ("content".into(), "is required".into()));
        assert_eq!(worded("usage", "missing field `model`"), ("usage.model".into(), "is required".into()));
        assert_eq!(
            worded(".", "unknown field `tittle`, expected `title` or `metadata`"),
            ("tittle".into(), "unknown field; expected title or metadata".into())
        );
        assert_eq!(
            worded("?", "unknown field `x`, there are no fields"),
            ("x".into(), "unknown field: none are accepted here".into())
        );
    }
}
