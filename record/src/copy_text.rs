//! Rows in `COPY ... FROM STDIN`'s text format: tab-separated, `\N` for NULL, backslash
//! escapes. Used where many rows go to Postgres at once (the import's first loads, the API's
//! audit batches): `COPY` parses them with the columns' own input functions and costs the
//! server far less per row than `INSERT ... SELECT FROM UNNEST`.

/// Appends one row.
pub fn line<S: AsRef<str>>(out: &mut Vec<u8>, row: &[Option<S>]) {
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match v {
            Some(s) => field(out, s.as_ref()),
            None => out.extend_from_slice(b"\\N"),
        }
    }
    out.push(b'\n');
}

/// Appends one value, escaping what `COPY` would read as syntax.
pub fn field(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_what_copy_would_read_as_syntax() {
        let mut out = Vec::new();
        line(&mut out, &[Some("a\tb\\c\nd"), None, Some(r#"{"x":1}"#)]);
        assert_eq!(out, b"a\\tb\\\\c\\nd\t\\N\t{\"x\":1}\n");
    }
}
