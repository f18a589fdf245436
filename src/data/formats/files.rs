//! Reading a dataset's files: whole files, UTF-8 text, JSON with errors that name the line (and
//! the original project's Python-quoted JSON), the folder a file sits in.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Parses JSON with errors that name the line and column, and a clear message for the original
/// project's Python-style single-quoted files.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    file: &Path,
    bytes: &[u8],
    what: &str,
) -> Result<T> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(e) => {
            let text = String::from_utf8_lossy(bytes);
            if e.is_syntax()
                && let Some((line, column)) = python_quote_position(&text)
            {
                return Err(Error::parse(
                    file,
                    Some(format!("line {line}, column {column}")),
                    "uses Python single quotes ('...') where JSON needs double quotes (\"...\"); \
                     the original project's sample custom_dataset.json was written this way. \
                     Replace the single quotes around keys and strings with double quotes",
                ));
            }
            let location = Some(format!("line {}, column {}", e.line(), e.column()));
            let message = if e.is_data() {
                format!("not a valid {what}: {e}")
            } else if e.is_eof() {
                format!("malformed JSON: the file ends early ({e})")
            } else {
                format!("malformed JSON: {e}")
            };
            Err(Error::parse(file, location, message))
        }
    }
}

/// Line and column (1-based, in characters) of the first single quote outside a JSON string
/// that opens a key or value (follows `{`, `[`, `,` or `:`).
fn python_quote_position(text: &str) -> Option<(usize, usize)> {
    let (mut line, mut column) = (1, 0);
    let mut in_string = false;
    let mut escaped = false;
    let mut prev = None;
    for c in text.chars() {
        if c == '\n' {
            line += 1;
            column = 0;
        } else {
            column += 1;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c == '\'' && matches!(prev, None | Some('{' | '[' | ',' | ':')) {
            return Some((line, column));
        }
        if !c.is_whitespace() {
            prev = Some(c);
        }
    }
    None
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads a UTF-8 text file (a leading BOM is dropped), naming it in the error.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = read_file(path)?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            Err(Error::parse(
                path,
                Some(format!("line {line}")),
                "not UTF-8 text; save the file as UTF-8",
            ))
        }
    }
}

/// The folder a dataset file sits in.
pub(crate) fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_quotes_are_found() {
        assert_eq!(python_quote_position("{\n  'images': []}"), Some((2, 3)));
        assert_eq!(python_quote_position("{\"a\": \"it's\"}"), None);
        assert_eq!(python_quote_position("{\"a\": ['x']}"), Some((1, 8)));
    }
}
