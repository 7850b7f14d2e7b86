//! Source text to syntax tree: the pest grammar in `grammar/beb.pest` and the AST it builds.

pub mod ast;
pub mod parser;

pub use ast::{Expr, ExprKind, Span, Spanned, Stmt, StmtKind};
pub use parser::{SyntaxError, parse_expression, parse_program};
