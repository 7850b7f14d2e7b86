//! Source text to syntax tree: the pest grammar in `grammar/beb.pest` and the AST it builds.

pub mod ast;
pub mod brackets;
pub mod parser;

pub use ast::{Expr, ExprKind, Span, Spanned, Stmt, StmtKind};
pub use parser::{SyntaxError, parse_expression, parse_program};

/// The text without a leading byte-order mark (editors on some systems write one; it is not
/// part of the program).
pub fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}
