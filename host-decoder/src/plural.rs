//! Counts in words: `1 frame was lost`, `3 frames were lost`, `0 frames were lost`.
//!
//! Every message that puts a number before a noun says it through [`count`], the caller giving
//! both forms (and the verb with them when the sentence has one):
//! `count(n, "frame was", "frames were")`.

/// `one` when `n` is 1, else `many` (English uses the plural for 0).
pub fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// `n` and the words that follow it in the right number: `count(1, "span", "spans")` is
/// `1 span`, `count(2, "frame was", "frames were")` is `2 frames were`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", plural(n, one, many))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_every_other_number_plural() {
        assert_eq!(count(1, "frame was", "frames were"), "1 frame was");
        assert_eq!(count(0, "frame was", "frames were"), "0 frames were");
        assert_eq!(count(2, "batch", "batches"), "2 batches");
        assert_eq!(plural(1, "it", "them"), "it");
    }
}
