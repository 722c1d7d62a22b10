//! Generated replies: how a reply's text is cut into the events that stream it.
//!
//! The cut is a pure function of the text, so any instance can stream a reply from what is stored
//! and agree, event for event, with the instance generating it: `Last-Event-ID` resumes exactly
//! wherever the stream is picked up again. A segment ends where a run of whitespace ends (a word
//! and the spaces after it) or after `SEGMENT_MAX_CHARS` characters (scripts without spaces).
//! Every boundary inside a prefix of the text is a boundary of the whole text, so the segments of
//! a checkpoint are the first segments of the finished reply; only the last one may still grow.

/// The most characters one streamed segment holds: small, so a delta waits for little more than
/// the token that completes it.
pub const SEGMENT_MAX_CHARS: usize = 4;

/// The byte offsets where `text`'s segments end, but the last segment's (which ends at the end).
fn boundaries(text: &str) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut previous_space = false;
    let mut chars = 0;
    for (index, ch) in text.char_indices() {
        let space = ch.is_whitespace();
        if index > 0 && ((previous_space && !space) || chars == SEGMENT_MAX_CHARS) {
            cuts.push(index);
            chars = 0;
        }
        chars += 1;
        previous_space = space;
    }
    cuts
}

/// The segments of `text` that are complete whatever follows, and the open rest (which is a
/// segment too once the reply has ended).
pub fn segments(text: &str) -> (Vec<&str>, &str) {
    let mut parts = Vec::new();
    let mut start = 0;
    for cut in boundaries(text) {
        parts.push(&text[start..cut]);
        start = cut;
    }
    (parts, &text[start..])
}

/// Every segment of a finished reply's text.
pub fn all_segments(text: &str) -> Vec<&str> {
    let (mut parts, rest) = segments(text);
    if !rest.is_empty() {
        parts.push(rest);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_with_their_spaces_and_long_runs_in_pieces() {
        assert_eq!(all_segments("Ah, welcome  to\nmy"), vec!["Ah, ", "welc", "ome ", " ", "to\n", "my"]);
        assert_eq!(segments("Ah, we"), (vec!["Ah, "], "we"));
        let cjk = "你好世界你好世界你好";
        assert_eq!(all_segments(cjk), vec!["你好世界", "你好世界", "你好"]);
        assert!(all_segments("").is_empty());
    }

    /// The property resume relies on: the complete segments of every prefix are the first
    /// segments of the whole text, and the segments always join back to the text.
    #[test]
    fn a_prefix_cuts_like_the_whole() {
        let text = "Hello there, 👩‍👩‍👧 family!  Привет, мир. 日本語のテキストはスペースがありません end";
        let whole = all_segments(text);
        assert_eq!(whole.concat(), text);
        for (end, _) in text.char_indices() {
            let (complete, rest) = segments(&text[..end]);
            assert_eq!(complete, whole[..complete.len()].to_vec(), "prefix of {end} bytes");
            assert_eq!(format!("{}{}", complete.concat(), rest), &text[..end]);
        }
    }
}
