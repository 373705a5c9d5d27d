//! From byte spans in TOML text to what people read: line, column and dotted key.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Translates byte offsets of one text into 1-based line and column numbers.
pub(crate) struct Locator<'a> {
    text: &'a str,
    /// Byte offset where each line starts; `line_starts[0] == 0`.
    line_starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Locator { text, line_starts }
    }

    /// 1-based line and column (in characters) of a byte offset; offsets past
    /// the end point just after the last character.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }
}

/// Writes a key as one segment of a dotted key path, quoting it when it is not a bare TOML key.
pub(crate) fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// The dotted key path (`rule[2].exclude[0]`, 0-based indexes) of the deepest key or
/// value in `table` whose span covers `at`.
pub(crate) fn key_at(table: &DeTable<'_>, at: &Range<usize>) -> Option<String> {
    search_table(table, "", at)
}

fn search_table(table: &DeTable<'_>, prefix: &str, at: &Range<usize>) -> Option<String> {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key_segment(key.get_ref())
        } else {
            format!("{prefix}.{}", key_segment(key.get_ref()))
        };
        // The key itself first: unknown-key errors point exactly at it, and for a
        // `[[table]]` the key is what was mistyped, not its first element.
        if covers(&key.span(), at) {
            return Some(path);
        }
        if let Some(found) = search_value(value, &path, at) {
            return Some(found);
        }
    }
    None
}

fn search_value(value: &Spanned<DeValue<'_>>, path: &str, at: &Range<usize>) -> Option<String> {
    // Children first: the deepest match names the problem most precisely. The span of a
    // `[[table]]` element is only its header, so children are searched even when the
    // container's own span does not cover `at`.
    let deeper = match value.get_ref() {
        DeValue::Table(table) => search_table(table, path, at),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| search_value(item, &format!("{path}[{i}]"), at)),
        _ => None,
    };
    deeper.or_else(|| covers(&value.span(), at).then(|| path.to_owned()))
}

fn covers(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        let locator = Locator::new(text);
        assert_eq!(locator.position(0), (1, 1));
        assert_eq!(locator.position(4), (1, 5));
        assert_eq!(locator.position(6), (2, 1));
        // "é" is two bytes but one column.
        assert_eq!(locator.position(text.find('"').unwrap()), (2, 6));
        assert_eq!(locator.position(text.len() + 10), (3, 1));
    }

    #[test]
    fn key_at_names_nested_array_elements() {
        let text = "[[rule]]\npath = \"/a\"\n[[rule]]\npath = \"/b\"\nexclude = [\"x\", \"y\"]\n";
        let table = DeTable::parse(text).unwrap();
        let y = text.find("\"y\"").unwrap();
        assert_eq!(
            key_at(table.get_ref(), &(y..y + 3)).as_deref(),
            Some("rule[1].exclude[1]")
        );
        let path = text.rfind("path").unwrap();
        assert_eq!(
            key_at(table.get_ref(), &(path..path + 4)).as_deref(),
            Some("rule[1].path")
        );
    }

    #[test]
    fn key_segment_quotes_only_when_needed() {
        assert_eq!(
            key_segment("full_rehash-interval2"),
            "full_rehash-interval2"
        );
        assert_eq!(key_segment("a.b"), "\"a.b\"");
        assert_eq!(key_segment(""), "\"\"");
    }
}
