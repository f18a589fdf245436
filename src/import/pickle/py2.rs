//! Python 2 literals of protocol 0: `STRING`'s quoted strings and `UNICODE`'s raw-unicode-escape.

/// Decodes a protocol-0 `STRING` argument: a Python 2 quoted literal (`'...'` or `"..."`), with
/// the escapes of Python 2's `string_escape` codec. The result is raw bytes.
pub fn decode_py2_string_literal(line: &[u8]) -> std::result::Result<Vec<u8>, String> {
    // Python 2 strips trailing whitespace and control characters (e.g. a `\r`) first.
    let mut end = line.len();
    while end > 0 && line[end - 1] <= b' ' {
        end -= 1;
    }
    let line = &line[..end];
    let quoted =
        line.len() >= 2 && (line[0] == b'\'' || line[0] == b'"') && line[line.len() - 1] == line[0];
    if !quoted {
        return Err("the argument must be a quoted string".into());
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = body.get(i) else {
            return Err("trailing \\ in string".into());
        };
        i += 1;
        match e {
            b'\n' => {} // line continuation
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8); // Python stores it in a char
            }
            b'x' => {
                let hex = body
                    .get(i..i + 2)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) if body[i..i + 2].iter().all(u8::is_ascii_hexdigit) => {
                        out.push(b);
                        i += 2;
                    }
                    _ => return Err("invalid \\x escape".into()),
                }
            }
            other => {
                // Unknown escapes are kept as they are.
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// Decodes a protocol-0 `UNICODE` argument: Python's `raw-unicode-escape`, Latin-1 bytes with
/// `\uXXXX` and `\UXXXXXXXX` escapes (interpreted only after an odd number of backslashes).
pub fn decode_raw_unicode_escape(line: &[u8]) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        i += 1;
        if c != b'\\' || i >= line.len() {
            out.push(char::from(c));
            continue;
        }
        let digits = match line[i] {
            b'u' => 4,
            b'U' => 8,
            other => {
                out.push('\\');
                out.push(char::from(other));
                i += 1;
                continue;
            }
        };
        let hex = line
            .get(i + 1..i + 1 + digits)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        let Some(code) = hex else {
            return Err("truncated \\uXXXX escape".into());
        };
        let Some(ch) = char::from_u32(code) else {
            return Err(format!(
                "\\u escape {code:#x} is not a Unicode scalar value"
            ));
        };
        out.push(ch);
        i += 1 + digits;
    }
    Ok(out)
}
