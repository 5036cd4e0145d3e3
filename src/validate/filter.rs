//! The devices_filter compiler of createTargetedMessage: source text to an `Expr`, or
//! Pushwoosh-style errors ("syntax" / "semantic", with a 0-based character position).
//!
//! Grammar (all operators left-associative; `\` binds tighter than `+` and `*`, which are equal):
//! ```text
//! filter  := union EOF
//! union   := subtr (("+" | "*") subtr)*
//! subtr   := primary ("\" primary)*
//! primary := "(" union ")" | "A" "(" string ["," "[" string ("," string)* "]"] ")"
//!          | "T" "(" string "," OPERATOR ["," operand] ")"
//!          | "AT" "(" string "," string "," OPERATOR ["," operand] ")"
//! operand := string | integer | "[" [scalar ("," scalar)*] "]"
//! ```
//! The operand may be left out only for NOTSET and ANY, whose operand is ignored.

use std::fmt;

pub use crate::validate::tags::Operator;

/// One compile error, shaped like Pushwoosh's `{"message": .., "type": ..}` plus where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub message: String,
    /// "syntax" or "semantic".
    pub kind: &'static str,
    /// 0-based character (not byte) offset in the source.
    pub position: usize,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} error at position {})",
            self.message, self.kind, self.position
        )
    }
}

/// A platform name accepted by `A("CODE", [...])`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Ios,
    Android,
    OsX,
    Windows,
    Amazon,
    Safari,
    Chrome,
    Firefox,
}

impl Platform {
    pub const ALL: [Platform; 8] = [
        Self::Ios,
        Self::Android,
        Self::OsX,
        Self::Windows,
        Self::Amazon,
        Self::Safari,
        Self::Chrome,
        Self::Firefox,
    ];

    /// The name as the filter language spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ios => "iOS",
            Self::Android => "Android",
            Self::OsX => "OsX",
            Self::Windows => "Windows",
            Self::Amazon => "Amazon",
            Self::Safari => "Safari",
            Self::Chrome => "Chrome",
            Self::Firefox => "Firefox",
        }
    }

    /// Exact (case-sensitive) name lookup.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// A single operand value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar {
    Str(String),
    Int(i64),
}

/// A tag operand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// Left out (NOTSET and ANY only).
    None,
    One(Scalar),
    List(Vec<Scalar>),
}

/// A compiled filter: sets of devices and the operations between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Devices subscribed to an application, on the listed platforms (None: all of them).
    App {
        code: String,
        platforms: Option<Vec<Platform>>,
    },
    /// Devices whose tag `name` matches.
    Tag {
        name: String,
        op: Operator,
        operand: Operand,
    },
    /// Devices whose application-specific tag `name` of `app` matches.
    AppTag {
        app: String,
        name: String,
        op: Operator,
        operand: Operand,
    },
    /// `+`
    Union(Box<Expr>, Box<Expr>),
    /// `*`
    Intersect(Box<Expr>, Box<Expr>),
    /// `\`
    Subtract(Box<Expr>, Box<Expr>),
}

/// Deepest parenthesis nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Most set operations (`+`, `*`, `\`) accepted in one filter.
pub const MAX_OPERATIONS: usize = 1000;

/// Compiles a devices_filter. Returns every semantic error found, and the first syntax
/// error (after which the rest of the text cannot be read reliably).
pub fn compile(src: &str) -> Result<Expr, Vec<FilterError>> {
    let tokens = crate::validate::filter_lexer::lex(src).map_err(|e| vec![e])?;
    crate::validate::filter_parser::parse(&tokens)
}

fn write_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => write_str(f, s),
            Self::Int(i) => write!(f, "{i}"),
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => Ok(()),
            Self::One(s) => write!(f, ", {s}"),
            Self::List(items) => {
                f.write_str(", [")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Canonical text with every operation parenthesized, e.g. `(A("X") + (T("a", EQ, 1) \ A("Y")))`;
/// compiling it again gives the same `Expr`.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::App { code, platforms } => {
                f.write_str("A(")?;
                write_str(f, code)?;
                if let Some(platforms) = platforms {
                    f.write_str(", [")?;
                    for (i, p) in platforms.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        write_str(f, p.name())?;
                    }
                    f.write_str("]")?;
                }
                f.write_str(")")
            }
            Self::Tag { name, op, operand } => {
                f.write_str("T(")?;
                write_str(f, name)?;
                write!(f, ", {op}{operand})")
            }
            Self::AppTag {
                app,
                name,
                op,
                operand,
            } => {
                f.write_str("AT(")?;
                write_str(f, app)?;
                f.write_str(", ")?;
                write_str(f, name)?;
                write!(f, ", {op}{operand})")
            }
            Self::Union(l, r) => write!(f, "({l} + {r})"),
            Self::Intersect(l, r) => write!(f, "({l} * {r})"),
            Self::Subtract(l, r) => write!(f, "({l} \\ {r})"),
        }
    }
}
