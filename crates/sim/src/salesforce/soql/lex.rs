//! Tokens of a SOQL statement. Dates and datetimes are unquoted in SOQL, so the lexer recognises
//! them here (a `2026-11-24` is one token, not a number and two negative numbers).

use chrono::{DateTime, NaiveDate, Utc};

use super::{CmpOp, LikeTok, SoqlError};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A keyword or a (possibly dotted) field or object name, as written.
    Word(String),
    Str(StrLit),
    Number(f64),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    LParen,
    RParen,
    Comma,
    Colon,
    Op(CmpOp),
    Eof,
}

/// A quoted string: its value, and the same text as a LIKE pattern, where the escapes `\%` and
/// `\_` (and only they) stand for a literal `%` or `_`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StrLit {
    pub value: String,
    pub pattern: Vec<LikeTok>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    /// Byte offsets into the statement, for error messages.
    pub start: usize,
    pub end: usize,
}

#[expect(
    clippy::too_many_lines,
    reason = "the lexer is one match over SOQL's tokens"
)]
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, SoqlError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = match c {
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b':' => {
                i += 1;
                Tok::Colon
            }
            b'=' => {
                i += 1;
                Tok::Op(CmpOp::Eq)
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Op(CmpOp::Ne)
            }
            b'<' => match bytes.get(i + 1) {
                Some(b'>') => {
                    i += 2;
                    Tok::Op(CmpOp::Ne)
                }
                Some(b'=') => {
                    i += 2;
                    Tok::Op(CmpOp::Le)
                }
                _ => {
                    i += 1;
                    Tok::Op(CmpOp::Lt)
                }
            },
            b'>' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    i += 2;
                    Tok::Op(CmpOp::Ge)
                } else {
                    i += 1;
                    Tok::Op(CmpOp::Gt)
                }
            }
            b'\'' => {
                let (lit, next) = string_literal(src, i)?;
                i = next;
                Tok::Str(lit)
            }
            b'0'..=b'9' if is_date_at(bytes, i) => {
                let (tok, next) = date_literal(src, i)?;
                i = next;
                tok
            }
            b'0'..=b'9' | b'.' => {
                let (n, next) = number(src, i)?;
                i = next;
                Tok::Number(n)
            }
            b'-' | b'+'
                if bytes
                    .get(i + 1)
                    .is_some_and(|b| b.is_ascii_digit() || *b == b'.') =>
            {
                let (n, next) = number(src, i + 1)?;
                i = next;
                Tok::Number(if c == b'-' { -n } else { n })
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.')
                {
                    i += 1;
                }
                Tok::Word(src[start..i].to_string())
            }
            _ => {
                let ch = src[i..].chars().next().map_or(1, char::len_utf8);
                return Err(unexpected(src, i, i + ch));
            }
        };
        out.push(Token { tok, start, end: i });
    }
    out.push(Token {
        tok: Tok::Eof,
        start: src.len(),
        end: src.len(),
    });
    Ok(out)
}

fn string_literal(src: &str, open: usize) -> Result<(StrLit, usize), SoqlError> {
    let mut value = String::new();
    let mut pattern = Vec::new();
    let mut chars = src[open + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        let at = open + 1 + off;
        match c {
            '\'' => return Ok((StrLit { value, pattern }, at + 1)),
            '\\' => {
                let Some((_, e)) = chars.next() else {
                    break;
                };
                let (v, p) = match e {
                    'n' | 'N' => ('\n', LikeTok::Char('\n')),
                    'r' | 'R' => ('\r', LikeTok::Char('\r')),
                    't' | 'T' => ('\t', LikeTok::Char('\t')),
                    'b' | 'B' => ('\u{8}', LikeTok::Char('\u{8}')),
                    'f' | 'F' => ('\u{c}', LikeTok::Char('\u{c}')),
                    '"' | '\'' | '\\' => (e, LikeTok::Char(e)),
                    '%' | '_' => (e, LikeTok::Char(e)),
                    _ => {
                        return Err(SoqlError::malformed(format!(
                            "Invalid string literal '\\{e}'. Illegal character sequence '\\{e}' \
                             in string literal at {}: use one of \\n \\r \\t \\b \\f \\\" \\' \\\\ \
                             (and \\% \\_ in LIKE patterns)",
                            position(src, at)
                        )));
                    }
                };
                value.push(v);
                pattern.push(p);
            }
            '%' => {
                value.push(c);
                pattern.push(LikeTok::Any);
            }
            '_' => {
                value.push(c);
                pattern.push(LikeTok::One);
            }
            _ => {
                value.push(c);
                pattern.push(LikeTok::Char(c));
            }
        }
    }
    Err(SoqlError::malformed(format!(
        "unterminated string literal starting at {}: close it with a single quote (') and \
         escape quotes inside it as \\'",
        position(src, open)
    )))
}

fn number(src: &str, from: usize) -> Result<(f64, usize), SoqlError> {
    let bytes = src.as_bytes();
    let mut i = from;
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    src[from..i]
        .parse::<f64>()
        .map(|n| (n, i))
        .map_err(|_| unexpected(src, from, i))
}

/// `YYYY-MM-DD` at `i`: the only shape in which SOQL puts a `-` right after digits.
fn is_date_at(bytes: &[u8], i: usize) -> bool {
    let Some(s) = bytes.get(i..i + 10) else {
        return false;
    };
    s.iter().enumerate().all(|(k, b)| match k {
        4 | 7 => *b == b'-',
        _ => b.is_ascii_digit(),
    })
}

fn date_literal(src: &str, i: usize) -> Result<(Tok, usize), SoqlError> {
    let bytes = src.as_bytes();
    let date_end = i + 10;
    if !matches!(bytes.get(date_end), Some(b'T' | b't')) {
        let text = &src[i..date_end];
        return NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map(|d| (Tok::Date(d), date_end))
            .map_err(|_| {
                SoqlError::malformed(format!(
                    "invalid date literal '{text}' at {}: write a real calendar date as YYYY-MM-DD",
                    position(src, i)
                ))
            });
    }
    let mut end = date_end + 1;
    while end < bytes.len()
        && (bytes[end].is_ascii_digit()
            || matches!(bytes[end], b':' | b'.' | b'+' | b'-' | b'Z' | b'z'))
    {
        end += 1;
    }
    let text = &src[i..end];
    parse_datetime(text)
        .map(|dt| (Tok::DateTime(dt), end))
        .ok_or_else(|| {
            SoqlError::malformed(format!(
                "invalid datetime literal '{text}' at {}: write YYYY-MM-DDThh:mm:ss[.sss] \
                 followed by Z or an offset such as +01:00",
                position(src, i)
            ))
        })
}

/// A datetime as SOQL literals write it (`…Z`, `…+01:00`) or as Salesforce returns it
/// (`2026-11-24T10:00:00.000+0000`), as an instant. `None` for anything else, including a
/// datetime without an offset, which would name no instant.
pub(crate) fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    if text.len() < 20 || !text.is_char_boundary(10) || !text[10..].starts_with(['T', 't']) {
        return None;
    }
    if let Some(t) = parse_stored_datetime(text) {
        return Some(t);
    }
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|dt| dt.with_timezone(&Utc))
}

/// The fast path for the one form every stored value has, `2026-11-24T10:00:00.000+0000`:
/// a window query compares each row's SystemModstamp several times, and chrono's general
/// parser costs far more than reading fixed digits.
fn parse_stored_datetime(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() != 28 || &b[23..] != b"+0000" {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        b.get(range)?.iter().try_fold(0u32, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ];
    if separators.iter().any(|(i, c)| b[*i] != *c) {
        return None;
    }
    let year = i32::try_from(digits(0..4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, digits(5..7)?, digits(8..10)?)?;
    let time = chrono::NaiveTime::from_hms_milli_opt(
        digits(11..13)?,
        digits(14..16)?,
        digits(17..19)?,
        digits(20..23)?,
    )?;
    Some(date.and_time(time).and_utc())
}

/// A stored date field (`2026-11-24`).
pub(crate) fn parse_date(text: &str) -> Option<NaiveDate> {
    if text.len() != 10 || !is_date_at(text.as_bytes(), 0) {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// "Row:r:Column:c" as Salesforce reports it (row from 1, column from 0).
pub(crate) fn position(src: &str, at: usize) -> String {
    let at = at.min(src.len());
    let before = src.get(..at).unwrap_or(src);
    let row = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let column = before[line_start..].chars().count();
    format!("Row:{row}:Column:{column}")
}

/// Salesforce's MALFORMED_QUERY message: the line around the token, a caret under it, where it
/// is, and the token itself. Long statements (2,000 Ids) are cut to a window around the token.
pub(crate) fn unexpected(src: &str, start: usize, end: usize) -> SoqlError {
    const WINDOW: usize = 60;
    let start = start.min(src.len());
    let end = end.clamp(start, src.len());
    let token = if start == src.len() {
        "<EOF>".to_string()
    } else {
        src.get(start..end).unwrap_or("").to_string()
    };
    let line_start = src[..start].rfind('\n').map_or(0, |p| p + 1);
    let line_end = src[start..].find('\n').map_or(src.len(), |p| start + p);
    let mut from = line_start;
    while start - from > WINDOW || !src.is_char_boundary(from) {
        from += 1;
    }
    let mut to = line_end;
    while to - start > WINDOW + token.len() || !src.is_char_boundary(to) {
        to -= 1;
    }
    let snippet = &src[from..to];
    let caret = " ".repeat(src[from..start].chars().count());
    SoqlError::malformed(format!(
        "{snippet}\n{caret}^\nERROR at {}\nunexpected token: '{token}'",
        position(src, start)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).map_or_else(
            |e| panic!("{e:?}"),
            |v| v.into_iter().map(|t| t.tok).collect(),
        )
    }

    #[test]
    fn operators_and_punctuation() {
        assert_eq!(
            toks("= != <> < <= > >= ( ) , :"),
            vec![
                Tok::Op(CmpOp::Eq),
                Tok::Op(CmpOp::Ne),
                Tok::Op(CmpOp::Ne),
                Tok::Op(CmpOp::Lt),
                Tok::Op(CmpOp::Le),
                Tok::Op(CmpOp::Gt),
                Tok::Op(CmpOp::Ge),
                Tok::LParen,
                Tok::RParen,
                Tok::Comma,
                Tok::Colon,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn escapes_in_strings() {
        let t = toks(r"'it\'s \\ a\nb \% \_ %_'");
        let Tok::Str(lit) = &t[0] else {
            panic!("{t:?}")
        };
        assert_eq!(lit.value, "it's \\ a\nb % _ %_");
        assert_eq!(
            lit.pattern[lit.pattern.len() - 6..],
            [
                LikeTok::Char('%'),
                LikeTok::Char(' '),
                LikeTok::Char('_'),
                LikeTok::Char(' '),
                LikeTok::Any,
                LikeTok::One
            ]
        );
    }

    #[test]
    fn bad_escape_and_unterminated_string_are_malformed() {
        let e = tokenize(r"'a\qb'").unwrap_err();
        assert_eq!(e.code, "MALFORMED_QUERY");
        assert!(e.message.contains("\\q"), "{}", e.message);
        let e = tokenize("Name = 'abc").unwrap_err();
        assert!(e.message.contains("unterminated"), "{}", e.message);
    }

    #[test]
    fn numbers_dates_and_datetimes() {
        assert_eq!(
            toks("42 -1.5 .5")[..3],
            [Tok::Number(42.0), Tok::Number(-1.5), Tok::Number(0.5)]
        );
        let d = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap_or_default();
        assert_eq!(toks("2026-11-24")[0], Tok::Date(d));
        let z = parse_datetime("2026-11-24T10:00:00Z");
        assert!(z.is_some());
        for s in [
            "2026-11-24T10:00:00Z",
            "2026-11-24T10:00:00.000Z",
            "2026-11-24T11:00:00+01:00",
            "2026-11-24T11:00:00.000+0100",
            "2026-11-24T05:00:00-05:00",
        ] {
            assert_eq!(toks(s)[0], Tok::DateTime(z.unwrap_or_default()), "{s}");
        }
        assert!(tokenize("2026-13-40").is_err());
        assert!(
            tokenize("2026-11-24T10:00:00").is_err(),
            "no offset names no instant"
        );
    }

    #[test]
    fn stored_salesforce_datetimes_parse() {
        let a = parse_datetime("2026-11-24T10:00:00.000+0000");
        assert_eq!(a, parse_datetime("2026-11-24T10:00:00Z"));
        assert!(a.is_some());
        assert_eq!(parse_datetime("2026-11-24"), None);
        // The fast path and chrono agree, including on what they refuse.
        for text in [
            "2026-11-24T23:59:59.999+0000",
            "2024-02-29T00:00:00.000+0000",
            "2026-02-29T00:00:00.000+0000",
            "2026-11-24T24:00:00.000+0000",
            "2026-11-24 10:00:00.000+0000",
            "2026-11-24T10:00:0x.000+0000",
        ] {
            let general = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
                .ok()
                .map(|dt| dt.with_timezone(&Utc));
            assert_eq!(parse_stored_datetime(text), general, "{text}");
        }
        assert_eq!(parse_datetime("hello world, this is text"), None);
        assert!(parse_date("2026-11-24").is_some());
        assert!(parse_date("2026-11-24T10:00:00Z").is_none());
    }

    #[test]
    fn unexpected_character_points_at_it() {
        let e = tokenize("SELECT Id FROM Contact WHERE Name = \"x\"").unwrap_err();
        assert!(
            e.message.contains("unexpected token: '\"'"),
            "{}",
            e.message
        );
        assert!(e.message.contains("Row:1:Column:36"), "{}", e.message);
    }
}
