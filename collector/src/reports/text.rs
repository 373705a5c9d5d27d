//! Escaping for the three formats people open: CSV in a spreadsheet, HTML in a browser,
//! Markdown in a ticket. Subjects, diffs and comments come from hosts and people, so any
//! byte may be hostile. Pure.
//!
//! Control characters and the format characters that reorder or hide text go through the
//! one escaping of `driftwatch_common::pathbytes` (`\xNN`), so a file viewed with `cat`
//! or `less` cannot clear the screen, set a window title, forge a line or reverse text.

use driftwatch_common::pathbytes::push_char;

/// Unsafe characters ([`driftwatch_common::pathbytes::is_unsafe_char`]) other than tab
/// (and newline when `keep_newlines`), shown as `\xNN`.
fn visible_controls(text: &str, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\t' => out.push('\t'),
            c => push_char(&mut out, c),
        }
    }
    out
}

/// One CSV field (RFC 4180): every unsafe character (line breaks and tabs included) as
/// `\xNN`, so a record is one line; quoted when it holds a comma or quote, quotes doubled.
/// A field that a spreadsheet would run as a formula (first character `=`, `+`, `-`, `@`,
/// tab or CR) gets a leading `'` first, so it shows as text.
pub fn csv_field(value: &str) -> String {
    let escaped = driftwatch_common::pathbytes::escape_text(value);
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{escaped}")
    } else {
        escaped
    };
    if guarded.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// One CSV record, CRLF-terminated.
pub fn csv_record<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = fields
        .iter()
        .map(|f| csv_field(f.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// Text for HTML element content and quoted attribute values.
pub fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in visible_controls(text, true).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text in running Markdown: every ASCII punctuation character backslash-escaped (CommonMark
/// allows it for all of them), line breaks as spaces, so nothing becomes markup, a link,
/// HTML or a new block.
pub fn md_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in visible_controls(&text.replace(['\r', '\n'], " "), false).chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An inline code span for a subject or hash: the fence is longer than any run of
/// backticks inside, padded with spaces, on one line.
pub fn md_code(text: &str) -> String {
    let one_line = visible_controls(&text.replace(['\r', '\n'], " "), false);
    let fence = "`".repeat(longest_backtick_run(&one_line) + 1);
    format!("{fence} {one_line} {fence}")
}

/// A fenced code block (a diff): the fence is longer than any run of backticks inside.
pub fn md_block(text: &str) -> String {
    let body = visible_controls(&text.replace("\r\n", "\n").replace('\r', "\n"), true);
    let fence = "`".repeat((longest_backtick_run(&body) + 1).max(3));
    format!("{fence}text\n{}\n{fence}\n", body.trim_end_matches('\n'))
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_rfc_4180_requires() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "two\\x0alines");
        assert_eq!(
            csv_field("a\u{1b}[2J\u{1b}]0;t\u{7}\r\u{202e}b"),
            "a\\x1b[2J\\x1b]0;t\\x07\\x0d\\xe2\\x80\\xaeb"
        );
        assert_eq!(csv_field(""), "");
        assert_eq!(csv_record(&["a", "b,c"]), "a,\"b,c\"\r\n");
    }

    #[test]
    fn csv_defuses_formulas() {
        for (cell, shown) in [
            (
                "=HYPERLINK(\"http://x\")",
                "\"'=HYPERLINK(\"\"http://x\"\")\"",
            ),
            ("+1+1", "'+1+1"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\\x09x"),
            ("\rx", "'\\x0dx"),
            ("a=b", "a=b"),
        ] {
            assert_eq!(csv_field(cell), shown, "{cell:?}");
        }
    }

    #[test]
    fn html_escapes_markup_and_controls() {
        assert_eq!(
            html("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(html("a\u{1b}[31mb\nc"), "a\\x1b[31mb\nc");
        assert_eq!(html("gpj.\u{202e}exe"), "gpj.\\xe2\\x80\\xaeexe");
    }

    #[test]
    fn markdown_text_cannot_become_markup() {
        assert_eq!(md_text("*bold* [x](y)"), "\\*bold\\* \\[x\\]\\(y\\)");
        assert_eq!(md_text("a\n# heading"), "a \\# heading");
        assert_eq!(md_text("<img src=x>"), "\\<img src\\=x\\>");
    }

    #[test]
    fn markdown_code_outlasts_backticks() {
        assert_eq!(md_code("file:/etc/a"), "` file:/etc/a `");
        assert_eq!(md_code("file:/x``y"), "``` file:/x``y ```");
        assert_eq!(md_code("a\nb"), "` a b `");
        let block = md_block("-a\n+```b\n");
        assert!(block.starts_with("````text\n"), "{block}");
        assert!(block.ends_with("\n````\n"), "{block}");
        assert!(md_block("x\u{7}").contains("x\\x07"));
    }
}
