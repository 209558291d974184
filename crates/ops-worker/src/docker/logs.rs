//! Bounded log tails: the newest bytes of a container's log stream, cut at a line boundary, so a
//! container that writes long lines cannot make a bundle (or an error message) arbitrarily big.

/// Collects a log stream, keeping at most about twice `max` bytes in memory at any time.
pub(crate) struct Tail {
    buf: Vec<u8>,
    max: usize,
    cut: bool,
}

impl Tail {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
            cut: false,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.max.saturating_mul(2).max(64 * 1024) {
            let excess = self.buf.len() - self.max;
            self.buf.drain(..excess);
            self.cut = true;
        }
    }

    /// The kept text (invalid UTF-8 shown as U+FFFD) and whether anything older was dropped.
    pub(crate) fn finish(self) -> (String, bool) {
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        let (text, cut) = keep_last(text, self.max);
        (text, cut || self.cut)
    }
}

/// The last at most `max` bytes of `text`, starting at a line start when the cut falls inside a
/// line (unless that would drop everything), and whether anything was dropped.
pub(crate) fn keep_last(mut text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut from = text.len() - max;
    while !text.is_char_boundary(from) {
        from += 1;
    }
    // Start at the next whole line when the cut is inside one and more lines follow.
    if from > 0 && text.as_bytes()[from - 1] != b'\n' {
        if let Some(newline) = text[from..].find('\n') {
            if from + newline + 1 < text.len() {
                from += newline + 1;
            }
        }
    }
    text.drain(..from);
    (text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_logs_are_kept_whole() {
        let (text, cut) = keep_last("a\nb\n".into(), 4);
        assert_eq!((text.as_str(), cut), ("a\nb\n", false));
    }

    #[test]
    fn the_newest_whole_lines_are_kept() {
        // 24 bytes; the last 12 start inside `second`, so `second` is dropped whole.
        let (text, cut) = keep_last("first line\nsecond\nthird\n".into(), 12);
        assert_eq!((text.as_str(), cut), ("third\n", true));
        // A cut exactly at a line start keeps that line.
        let (text, _) = keep_last("first line\nsecond\nthird\n".into(), 13);
        assert_eq!(text, "second\nthird\n");
    }

    #[test]
    fn one_line_longer_than_the_cap_keeps_its_end() {
        let (text, cut) = keep_last("0123456789\n".into(), 5);
        assert_eq!((text.as_str(), cut), ("6789\n", true));
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let (text, cut) = keep_last("ééé".into(), 3);
        assert_eq!((text.as_str(), cut), ("é", true));
    }

    #[test]
    fn a_stream_keeps_its_tail_within_the_cap() {
        let mut tail = Tail::new(100);
        for i in 0..10_000 {
            tail.push(format!("line {i:05}\n").as_bytes());
            assert!(tail.buf.len() <= 64 * 1024 + 11);
        }
        let (text, cut) = tail.finish();
        assert!(cut);
        assert!(text.len() <= 100);
        assert!(text.starts_with("line "), "{text}");
        assert!(text.ends_with("line 09999\n"));

        let mut tail = Tail::new(100);
        tail.push(b"one\n");
        tail.push(b"two\n");
        assert_eq!(tail.finish(), ("one\ntwo\n".to_owned(), false));
    }
}
