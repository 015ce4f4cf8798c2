//! PromQL lexer: bytes → tokens with byte positions.

use super::ast::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Number(f64),
    /// A duration literal such as `5m` or `1h30m`, in milliseconds.
    Duration(i64),
    Str(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Colon,
    At,
    /// `=`
    Assign,
    /// `!=`
    Ne,
    /// `=~`
    ReMatch,
    /// `!~`
    ReNotMatch,
    /// `==`
    EqlEql,
    Gt,
    Lt,
    Ge,
    Le,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eof,
}

impl Tok {
    /// How Prometheus names the token in "unexpected …" messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier {s:?}"),
            Tok::Number(n) => format!("number {:?}", super::value::format_value(*n)),
            Tok::Duration(_) => "duration".into(),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::LParen => "left parenthesis '('".into(),
            Tok::RParen => "right parenthesis ')'".into(),
            Tok::LBrace => "left brace '{'".into(),
            Tok::RBrace => "right brace '}'".into(),
            Tok::LBracket => "left bracket '['".into(),
            Tok::RBracket => "right bracket ']'".into(),
            Tok::Comma => "\",\"".into(),
            Tok::Colon => "\":\"".into(),
            Tok::At => "\"@\"".into(),
            Tok::Assign => "\"=\"".into(),
            Tok::Ne => "\"!=\"".into(),
            Tok::ReMatch => "\"=~\"".into(),
            Tok::ReNotMatch => "\"!~\"".into(),
            Tok::EqlEql => "\"==\"".into(),
            Tok::Gt => "\">\"".into(),
            Tok::Lt => "\"<\"".into(),
            Tok::Ge => "\">=\"".into(),
            Tok::Le => "\"<=\"".into(),
            Tok::Add => "\"+\"".into(),
            Tok::Sub => "\"-\"".into(),
            Tok::Mul => "\"*\"".into(),
            Tok::Div => "\"/\"".into(),
            Tok::Mod => "\"%\"".into(),
            Tok::Pow => "\"^\"".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// Parses a Prometheus duration (`1h30m`, `500ms`, `2d`) into milliseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.is_empty() {
        return None;
    }
    let mut i = 0;
    let mut total: i64 = 0;
    // Units must appear in decreasing order, each at most once.
    let mut last_rank = usize::MAX;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let n: i64 = s[start..i].parse().ok()?;
        let (unit_ms, rank, len) = match (b.get(i), b.get(i + 1)) {
            (Some(b'm'), Some(b's')) => (1, 0, 2),
            (Some(b's'), _) => (1000, 1, 1),
            (Some(b'm'), _) => (60_000, 2, 1),
            (Some(b'h'), _) => (3_600_000, 3, 1),
            (Some(b'd'), _) => (86_400_000, 4, 1),
            (Some(b'w'), _) => (7 * 86_400_000, 5, 1),
            (Some(b'y'), _) => (365 * 86_400_000, 6, 1),
            _ => return None,
        };
        if rank >= last_rank {
            return None;
        }
        last_rank = rank;
        i += len;
        total = total.checked_add(n.checked_mul(unit_ms)?)?;
    }
    Some(total)
}

/// Length of a duration literal starting at `b[0]` (a digit), if one is there.
fn duration_len(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut pairs = 0;
    loop {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            break;
        }
        match (b.get(i), b.get(i + 1)) {
            (Some(b'm'), Some(b's')) => i += 2,
            (Some(b's' | b'm' | b'h' | b'd' | b'w' | b'y'), _) => i += 1,
            _ => {
                i = start;
                break;
            }
        }
        pairs += 1;
    }
    // A duration is followed by neither a name character nor a dot; `:` may follow (`x[5m:1m]`).
    if pairs == 0
        || b.get(i)
            .is_some_and(|c| (is_ident_char(*c) && *c != b':') || *c == b'.')
    {
        return None;
    }
    Some(i)
}

fn number_len(b: &[u8]) -> usize {
    if b.len() > 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') {
        let mut i = 2;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        return i;
    }
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    i
}

fn parse_number(s: &str) -> Option<f64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    s.parse().ok()
}

/// Unquotes a string literal body as Go's `strconv.Unquote` does for the escapes PromQL users write.
fn unquote(body: &str, quote: u8, start: usize) -> Result<String, ParseError> {
    if quote == b'`' {
        return Ok(body.to_string());
    }
    let mut out = String::with_capacity(body.len());
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let bad = || ParseError::new(start + 1 + i, "invalid syntax in quoted string");
        let (_, e) = chars.next().ok_or_else(bad)?;
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'v' => out.push('\x0b'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => out.push('\''),
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let mut v = 0u32;
                for _ in 0..n {
                    let (_, h) = chars.next().ok_or_else(bad)?;
                    v = v * 16 + h.to_digit(16).ok_or_else(bad)?;
                }
                out.push(char::from_u32(v).ok_or_else(bad)?);
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// Splits `input` into tokens, ending with [`Tok::Eof`]. `#` starts a comment to the end of the line.
pub fn lex(input: &str) -> Result<Vec<Token>, ParseError> {
    let b = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        let two = |x: u8| b.get(i + 1) == Some(&x);
        let (tok, len) = match c {
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'{' => (Tok::LBrace, 1),
            b'}' => (Tok::RBrace, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b',' => (Tok::Comma, 1),
            b':' if !b.get(i + 1).is_some_and(|c| is_ident_start(*c)) => (Tok::Colon, 1),
            b'@' => (Tok::At, 1),
            b'+' => (Tok::Add, 1),
            b'-' => (Tok::Sub, 1),
            b'*' => (Tok::Mul, 1),
            b'/' => (Tok::Div, 1),
            b'%' => (Tok::Mod, 1),
            b'^' => (Tok::Pow, 1),
            b'=' if two(b'=') => (Tok::EqlEql, 2),
            b'=' if two(b'~') => (Tok::ReMatch, 2),
            b'=' => (Tok::Assign, 1),
            b'!' if two(b'=') => (Tok::Ne, 2),
            b'!' if two(b'~') => (Tok::ReNotMatch, 2),
            b'>' if two(b'=') => (Tok::Ge, 2),
            b'>' => (Tok::Gt, 1),
            b'<' if two(b'=') => (Tok::Le, 2),
            b'<' => (Tok::Lt, 1),
            b'"' | b'\'' | b'`' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != c {
                    if b[j] == b'\\' && c != b'`' {
                        j += 1;
                    }
                    j += 1;
                }
                if j >= b.len() {
                    return Err(ParseError::new(start, "unterminated quoted string"));
                }
                let body = &input[i + 1..j];
                (Tok::Str(unquote(body, c, start)?), j + 1 - i)
            }
            b'0'..=b'9' | b'.' => {
                if let Some(n) = c.is_ascii_digit().then(|| duration_len(&b[i..])).flatten() {
                    let text = &input[i..i + n];
                    let ms = parse_duration(text).ok_or_else(|| {
                        ParseError::new(start, format!("bad duration syntax: {text:?}"))
                    })?;
                    (Tok::Duration(ms), n)
                } else {
                    let n = number_len(&b[i..]);
                    let text = &input[i..i + n];
                    match (n, parse_number(text)) {
                        (1.., Some(v)) if text != "." => (Tok::Number(v), n),
                        _ => {
                            return Err(ParseError::new(
                                start,
                                format!(
                                    "bad number or duration syntax: {:?}",
                                    &input[i..(i + n).max(i + 1)]
                                ),
                            ));
                        }
                    }
                }
            }
            c if is_ident_start(c) => {
                let mut j = i + 1;
                while j < b.len() && is_ident_char(b[j]) {
                    j += 1;
                }
                (Tok::Ident(input[i..j].to_string()), j - i)
            }
            _ => {
                let ch = input[i..].chars().next().unwrap_or('?');
                return Err(ParseError::new(
                    start,
                    format!("unexpected character: {ch:?}"),
                ));
            }
        };
        i += len;
        out.push(Token { tok, start, end: i });
    }
    out.push(Token {
        tok: Tok::Eof,
        start: b.len(),
        end: b.len(),
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn durations_numbers_and_operators() {
        assert_eq!(
            toks("x[1m30s] offset 5m"),
            [
                Tok::Ident("x".into()),
                Tok::LBracket,
                Tok::Duration(90_000),
                Tok::RBracket,
                Tok::Ident("offset".into()),
                Tok::Duration(300_000),
                Tok::Eof
            ]
        );
        assert_eq!(
            toks("1e3 0x10 .5 != =~ !~ == >= # comment"),
            [
                Tok::Number(1000.0),
                Tok::Number(16.0),
                Tok::Number(0.5),
                Tok::Ne,
                Tok::ReMatch,
                Tok::ReNotMatch,
                Tok::EqlEql,
                Tok::Ge,
                Tok::Eof
            ]
        );
        assert_eq!(toks(r#""a\"b\n""#), [Tok::Str("a\"b\n".into()), Tok::Eof]);
        assert_eq!(toks("`a\\b`"), [Tok::Str("a\\b".into()), Tok::Eof]);
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("30m1h"), None);
        assert_eq!(parse_duration("100ms"), Some(100));
    }

    #[test]
    fn errors_carry_positions() {
        assert_eq!(lex("x{a=\"b}").unwrap_err().pos, 4);
        assert_eq!(lex("a $ b").unwrap_err().pos, 2);
    }
}
