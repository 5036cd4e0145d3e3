//! The devices_filter lexer: source text to tokens, each with its 0-based character position.

use crate::validate::filter::FilterError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Plus,
    Star,
    Backslash,
    Str(String),
    Int(i64),
    Ident(String),
    Eof,
}

impl Tok {
    /// How the token reads in a message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::LParen => "\"(\"".into(),
            Self::RParen => "\")\"".into(),
            Self::LBracket => "\"[\"".into(),
            Self::RBracket => "\"]\"".into(),
            Self::Comma => "\",\"".into(),
            Self::Plus => "\"+\"".into(),
            Self::Star => "\"*\"".into(),
            Self::Backslash => "\"\\\"".into(),
            Self::Str(_) => "a string".into(),
            Self::Int(_) => "an integer".into(),
            Self::Ident(name) => format!("\"{name}\""),
            Self::Eof => "the end of the filter".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    /// 0-based character offset of the token's first character.
    pub(crate) pos: usize,
}

fn syntax(message: impl Into<String>, position: usize) -> FilterError {
    FilterError {
        message: message.into(),
        kind: "syntax",
        position,
    }
}

/// The tokens of `src`, ending with `Tok::Eof`, or the first lexical error.
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let simple = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            ',' => Some(Tok::Comma),
            '+' => Some(Tok::Plus),
            '*' => Some(Tok::Star),
            '\\' => Some(Tok::Backslash),
            _ => None,
        };
        if let Some(tok) = simple {
            out.push(Token { tok, pos: start });
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '"' {
            let (s, next) = string(&chars, i)?;
            out.push(Token {
                tok: Tok::Str(s),
                pos: start,
            });
            i = next;
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            i += 1;
            while chars.get(i).is_some_and(char::is_ascii_digit) {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let value = text.parse::<i64>().map_err(|_| {
                syntax(
                    format!("Invalid filter. Integer {text} is out of range."),
                    start,
                )
            })?;
            out.push(Token {
                tok: Tok::Int(value),
                pos: start,
            });
        } else if c.is_ascii_alphabetic() || c == '_' {
            while chars
                .get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
            {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(chars[start..i].iter().collect()),
                pos: start,
            });
        } else {
            return Err(syntax(
                format!("Invalid filter. Unexpected character \"{c}\"."),
                start,
            ));
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: chars.len(),
    });
    Ok(out)
}

/// A double-quoted string starting at `chars[open]`: its value and the index after it.
fn string(chars: &[char], open: usize) -> Result<(String, usize), FilterError> {
    let mut s = String::new();
    let mut i = open + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(syntax(
                    "Invalid filter. Unterminated string: closing '\"' expected.",
                    open,
                ));
            }
            Some('"') => return Ok((s, i + 1)),
            Some('\\') => {
                let escaped = match chars.get(i + 1) {
                    Some('"') => '"',
                    Some('\\') => '\\',
                    Some('/') => '/',
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some('r') => '\r',
                    _ => {
                        return Err(syntax(
                            "Invalid filter. Invalid escape in string: use \\\" or \\\\.",
                            i,
                        ));
                    }
                };
                s.push(escaped);
                i += 2;
            }
            Some(c) => {
                s.push(*c);
                i += 1;
            }
        }
    }
}
