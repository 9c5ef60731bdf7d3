//! CSV exports (RFC 4180): the quoting every field goes through, and the download response.
//!
//! A field that starts like a formula (`=`, `+`, `-`, `@`, or a tab or carriage return that
//! some spreadsheets skip) gets a leading `'`, so a key label or a user agent cannot run as a
//! formula when the file is opened in a spreadsheet. A field with a comma, a quote or a line
//! break is quoted, its quotes doubled. Small enough to own rather than add a crate for.

use std::borrow::Cow;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// A CSV document being written, header first, rows ending in CRLF.
#[derive(Debug)]
pub struct Csv {
    text: String,
}

impl Csv {
    pub fn new(header: &[&str]) -> Self {
        let mut csv = Self { text: String::new() };
        csv.row(header.iter().copied());
        csv
    }

    pub fn row<S: AsRef<str>>(&mut self, fields: impl IntoIterator<Item = S>) {
        for (i, value) in fields.into_iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push_str(&field(value.as_ref()));
        }
        self.text.push_str("\r\n");
    }

    /// The document as a download named `filename`.
    pub fn into_response(self, filename: &str) -> Response {
        attachment(self.text, "text/csv; charset=utf-8", filename)
    }
}

/// One field, neutralised and quoted as needed.
pub fn field(raw: &str) -> Cow<'_, str> {
    let formula = raw.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = raw.contains([',', '"', '\n', '\r']);
    if !formula && !quote {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len() + 3);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in raw.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
    Cow::Owned(out)
}

/// A body served as a download: `Content-Disposition: attachment` with a plain file name.
pub fn attachment(body: String, content_type: &'static str, filename: &str) -> Response {
    let safe: String = filename
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '-' })
        .collect();
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type)), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A strict RFC 4180 reader, to check that what we write reads back.
    fn parse(text: &str) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        let mut row = Vec::new();
        let mut field = String::new();
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') if field.is_empty() => quoted = true,
                (false, ',') => row.push(std::mem::take(&mut field)),
                (false, '\r') if chars.peek() == Some(&'\n') => {
                    chars.next();
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                (false, c) => field.push(c),
            }
        }
        assert!(!quoted && field.is_empty() && row.is_empty(), "the text ends mid-row: {text:?}");
        rows
    }

    #[test]
    fn plain_fields_are_left_alone() {
        assert_eq!(field("laptop agent"), "laptop agent");
        assert_eq!(field("12345"), "12345");
        assert_eq!(field(""), "");
        assert_eq!(field("a=b"), "a=b", "only a leading = is a formula");
    }

    #[test]
    fn commas_quotes_and_line_breaks_round_trip() {
        let values = ["a,b", "say \"hi\"", "two\nlines", "cr\r\nlf", "\"", ",", "plain", "", "ünïcode, ok"];
        let mut csv = Csv::new(&["value", "other"]);
        for value in values {
            csv.row([value, "x"]);
        }
        let rows = parse(&csv.text);
        assert_eq!(rows[0], ["value", "other"]);
        let read: Vec<&str> = rows[1..].iter().map(|row| row[0].as_str()).collect();
        assert_eq!(read, values);
        assert!(rows[1..].iter().all(|row| row.len() == 2 && row[1] == "x"));
    }

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(field("=1+1"), "'=1+1");
        assert_eq!(field("+1"), "'+1");
        assert_eq!(field("-1"), "'-1");
        assert_eq!(field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(field("\tcmd"), "'\tcmd");
        assert_eq!(field("=HYPERLINK(\"http://x\",\"y\")"), "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"");
        let mut csv = Csv::new(&["f"]);
        csv.row(["=cmd|' /C calc'!A0,x"]);
        assert_eq!(parse(&csv.text)[1], ["'=cmd|' /C calc'!A0,x"]);
    }

    #[test]
    fn downloads_are_attachments_with_a_plain_name() {
        let response = Csv::new(&["a"]).into_response("usage acme/\"x\".csv");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/csv; charset=utf-8");
        assert_eq!(response.headers()[header::CONTENT_DISPOSITION], "attachment; filename=\"usage-acme--x-.csv\"");
    }
}
