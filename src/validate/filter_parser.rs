//! The devices_filter parser: tokens to an `Expr`, with semantic checks of each set.
//!
//! Recursive descent with a bounded depth (`MAX_DEPTH` parentheses) and a bounded number of
//! operations (`MAX_OPERATIONS`), so no input can exhaust the stack, here or when the tree drops.

use crate::validate::filter::{
    Expr, FilterError, MAX_DEPTH, MAX_OPERATIONS, Operand, Operator, Platform, Scalar,
};
use crate::validate::filter_lexer::{Tok, Token};
use crate::validate::{suggest, tags};

/// A syntax error was recorded; parsing stops.
struct Stop;

type Parsed<T> = Result<T, Stop>;

struct Parser<'t> {
    tokens: &'t [Token],
    at: usize,
    depth: usize,
    operations: usize,
    errors: Vec<FilterError>,
}

/// Parses the tokens (ending with `Tok::Eof`) of a whole filter.
pub(crate) fn parse(tokens: &[Token]) -> Result<Expr, Vec<FilterError>> {
    let mut p = Parser {
        tokens,
        at: 0,
        depth: 0,
        operations: 0,
        errors: Vec::new(),
    };
    let parsed = p.union().and_then(|expr| {
        if p.peek() == &Tok::Eof {
            Ok(expr)
        } else {
            let message = format!(
                "Invalid filter. Operator \"+\", \"*\" or \"\\\" expected, got {}.",
                p.peek().describe()
            );
            Err(p.syntax(message))
        }
    });
    match parsed {
        Ok(expr) if p.errors.is_empty() => Ok(expr),
        _ => Err(p.errors),
    }
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.tokens.get(self.at).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.tokens
            .get(self.at)
            .or_else(|| self.tokens.last())
            .map_or(0, |t| t.pos)
    }

    fn bump(&mut self) -> Tok {
        let tok = self.peek().clone();
        if self.at < self.tokens.len() {
            self.at += 1;
        }
        tok
    }

    fn syntax(&mut self, message: impl Into<String>) -> Stop {
        let position = self.pos();
        self.errors.push(FilterError {
            message: message.into(),
            kind: "syntax",
            position,
        });
        Stop
    }

    fn semantic(&mut self, message: impl Into<String>, position: usize) {
        self.errors.push(FilterError {
            message: message.into(),
            kind: "semantic",
            position,
        });
    }

    fn expect(&mut self, tok: Tok, what: &str, set: &str) -> Parsed<()> {
        if *self.peek() == tok {
            self.bump();
            Ok(())
        } else {
            Err(self.syntax(format!("Invalid {set} specification. {what} expected.")))
        }
    }

    fn count_operation(&mut self) -> Parsed<()> {
        self.operations += 1;
        if self.operations > MAX_OPERATIONS {
            return Err(self.syntax(format!(
                "Invalid filter. Too many set operations (more than {MAX_OPERATIONS})."
            )));
        }
        Ok(())
    }

    /// union := subtr (("+" | "*") subtr)*
    fn union(&mut self) -> Parsed<Expr> {
        let mut left = self.subtraction()?;
        loop {
            let make: fn(Box<Expr>, Box<Expr>) -> Expr = match self.peek() {
                Tok::Plus => Expr::Union,
                Tok::Star => Expr::Intersect,
                _ => return Ok(left),
            };
            self.bump();
            self.count_operation()?;
            let right = self.subtraction()?;
            left = make(Box::new(left), Box::new(right));
        }
    }

    /// subtr := primary ("\" primary)*
    fn subtraction(&mut self) -> Parsed<Expr> {
        let mut left = self.primary()?;
        while *self.peek() == Tok::Backslash {
            self.bump();
            self.count_operation()?;
            let right = self.primary()?;
            left = Expr::Subtract(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Parsed<Expr> {
        match self.peek().clone() {
            Tok::LParen => {
                if self.depth >= MAX_DEPTH {
                    return Err(self.syntax(format!(
                        "Invalid filter. Parentheses nested deeper than {MAX_DEPTH} levels."
                    )));
                }
                self.bump();
                self.depth += 1;
                let inner = self.union()?;
                self.depth -= 1;
                self.expect(Tok::RParen, "\")\"", "filter")?;
                Ok(inner)
            }
            Tok::Ident(name) if name == "A" => {
                self.bump();
                self.app()
            }
            Tok::Ident(name) if name == "T" => {
                self.bump();
                self.tag(false)
            }
            Tok::Ident(name) if name == "AT" => {
                self.bump();
                self.tag(true)
            }
            other => Err(self.syntax(format!(
                "Invalid filter. Set expected (A(...), T(...), AT(...) or \"(\"), got {}.",
                other.describe()
            ))),
        }
    }

    /// A string argument; `what` names it in the message.
    fn string(&mut self, what: &str, set: &str) -> Parsed<(String, usize)> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Ok((s, pos))
            }
            _ => Err(self.syntax(format!("Invalid {set} specification. {what} expected."))),
        }
    }

    fn non_empty(&mut self, value: &str, what: &str, pos: usize) {
        if value.trim().is_empty() {
            self.semantic(format!("{what} must not be empty."), pos);
        }
    }

    /// After `A`: ( "CODE" [, [platforms]] )
    fn app(&mut self) -> Parsed<Expr> {
        const SET: &str = "application set";
        self.expect(Tok::LParen, "\"(\"", SET)?;
        let (code, code_pos) = self.string("Application code (string)", SET)?;
        self.non_empty(&code, "Application code", code_pos);
        let mut platforms = None;
        if *self.peek() == Tok::Comma {
            self.bump();
            let list_pos = self.pos();
            self.expect(Tok::LBracket, "Platform list \"[\"", SET)?;
            let mut list = Vec::new();
            if *self.peek() != Tok::RBracket {
                loop {
                    let (name, pos) = self.string("Platform name (string)", SET)?;
                    match Platform::from_name(&name) {
                        Some(p) => list.push(p),
                        None => {
                            let end = suggest::sentence_end(
                                &name,
                                Platform::ALL.iter().map(|p| p.name()),
                            );
                            let name = crate::validate::report::clip(&name);
                            self.semantic(
                                format!(
                                    "Unknown platform \"{name}\". Expected one of iOS, Android, OsX, Windows, Amazon, Safari, Chrome, Firefox{end}"
                                ),
                                pos,
                            );
                        }
                    }
                    if *self.peek() != Tok::Comma {
                        break;
                    }
                    self.bump();
                }
            } else {
                self.semantic(
                    "Platform list must not be empty (leave it out to target all platforms).",
                    list_pos,
                );
            }
            self.expect(Tok::RBracket, "\"]\"", SET)?;
            platforms = Some(list);
        }
        self.expect(Tok::RParen, "\")\"", SET)?;
        Ok(Expr::App { code, platforms })
    }

    /// After `T` or `AT`: ( ["APP",] "tag", OP [, operand] )
    fn tag(&mut self, with_app: bool) -> Parsed<Expr> {
        let set = if with_app {
            "application tag set"
        } else {
            "tag set"
        };
        self.expect(Tok::LParen, "\"(\"", set)?;
        let app = if with_app {
            let (app, pos) = self.string("Application code (string)", set)?;
            self.non_empty(&app, "Application code", pos);
            self.expect(Tok::Comma, "\",\"", set)?;
            Some(app)
        } else {
            None
        };
        let (name, name_pos) = self.string("Tag name (string)", set)?;
        self.non_empty(&name, "Tag name", name_pos);
        self.expect(Tok::Comma, "\",\"", set)?;
        let op_pos = self.pos();
        let op = match self.peek().clone() {
            Tok::Ident(word) => {
                self.bump();
                Operator::parse(&word).or_else(|| {
                    self.semantic(tags::unknown_operator(&word), op_pos);
                    None
                })
            }
            _ => {
                return Err(self.syntax(format!("Invalid {set} specification. Operator expected.")));
            }
        };
        let (operand, operand_pos) = if *self.peek() == Tok::Comma {
            self.bump();
            let pos = self.pos();
            (self.operand(set)?, pos)
        } else {
            (Operand::None, self.pos())
        };
        self.expect(Tok::RParen, "\")\"", set)?;
        let Some(op) = op else {
            // Unknown operator, already reported: build a placeholder that is never returned.
            return Ok(Expr::Tag {
                name,
                op: Operator::Any,
                operand,
            });
        };
        let view = match &operand {
            Operand::None => tags::OperandView::Missing,
            Operand::One(s) => tags::OperandView::One(view(s)),
            Operand::List(items) => tags::OperandView::List(items.iter().map(view).collect()),
        };
        for message in tags::operand_problems(op, &view) {
            self.semantic(message, operand_pos);
        }
        Ok(match app {
            Some(app) => Expr::AppTag {
                app,
                name,
                op,
                operand,
            },
            None => Expr::Tag { name, op, operand },
        })
    }

    fn scalar(&mut self, set: &str) -> Parsed<Scalar> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Ok(Scalar::Str(s))
            }
            Tok::Int(i) => {
                self.bump();
                Ok(Scalar::Int(i))
            }
            _ => Err(self.syntax(format!(
                "Invalid {set} specification. Value (string or integer) expected."
            ))),
        }
    }

    fn operand(&mut self, set: &str) -> Parsed<Operand> {
        if *self.peek() != Tok::LBracket {
            return self.scalar(set).map(Operand::One);
        }
        self.bump();
        let mut items = Vec::new();
        if *self.peek() != Tok::RBracket {
            loop {
                items.push(self.scalar(set)?);
                if *self.peek() != Tok::Comma {
                    break;
                }
                self.bump();
            }
        }
        self.expect(Tok::RBracket, "\"]\"", set)?;
        Ok(Operand::List(items))
    }
}

fn view(s: &Scalar) -> tags::Scalar {
    match s {
        Scalar::Str(v) => tags::Scalar::Str(v.clone()),
        Scalar::Int(i) => tags::Scalar::Int(*i),
    }
}
