//! pest parse tree -> spanned AST. Operator precedence comes from pest's Pratt parser.

use std::rc::Rc;
use std::sync::OnceLock;

use pest::Parser;
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};

use super::ast::*;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/beb.pest"]
struct BebParser;

/// Deeper bracket nesting than this is refused before parsing, so hostile input cannot
/// exhaust the stack of the recursive-descent parser.
const MAX_NESTING: usize = 200;

/// The deepest syntax tree an expression may build, counting each operator of a chain
/// (`1 + 1 + ...` is as deep as it is long), each prefix (`- - 1`), and each level of
/// brackets, lambdas and `else if`: the checker and interpreter recurse on the tree.
const MAX_EXPR_DEPTH: usize = 10_000;

/// Rule calls one parse may make: this many, plus `PARSE_STEPS_PER_BYTE` per byte of source.
/// Brackets are matched first (`brackets.rs`), but a balanced nest of `x [{ ... }, 2]` can
/// still be read two ways per level (an index, or `x` then a list), which doubles the work
/// per level; the limit bounds it (pest makes about 60 million calls a second). Ordinary
/// scripts make 10-20 calls per byte.
const PARSE_STEPS: usize = 2_000_000;
const PARSE_STEPS_PER_BYTE: usize = 200;

/// A syntax error: where, what was expected, and whether more input could complete it.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
    /// The input ended before the construct did (the REPL then asks for another line).
    pub incomplete: bool,
}

/// Parse a whole script.
pub fn parse_program(source: &str, file: u32) -> Result<Vec<Stmt>, SyntaxError> {
    check_nesting(source, file)?;
    let limit = PARSE_STEPS.saturating_add(PARSE_STEPS_PER_BYTE.saturating_mul(source.len()));
    let parsed = {
        // pest reads its call limit from a process-wide setting when a parse starts, so
        // parses that set their own limit take turns.
        static LIMIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = LIMIT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pest::set_call_limit(std::num::NonZeroUsize::new(limit));
        BebParser::parse(Rule::program, source)
    };
    let mut pairs = parsed.map_err(|e| convert_error(e, source, file, limit))?;
    let program = pairs.next().ok_or_else(|| SyntaxError {
        span: Span::new(file, 0, 0),
        message: "empty parse".into(),
        incomplete: false,
    })?;
    let builder = Builder {
        file,
        calls: Default::default(),
        depth: Default::default(),
        hash_on_line: hash_on_line(source),
    };
    builder.statements(program.into_inner())
}

/// Parse a `--set` value or other standalone expression.
pub fn parse_expression(source: &str, file: u32) -> Result<Expr, SyntaxError> {
    let statements = parse_program(source, file)?;
    match statements.as_slice() {
        [
            Spanned {
                node: StmtKind::Expr(expr),
                ..
            },
        ] => Ok(expr.clone()),
        _ => Err(SyntaxError {
            span: Span::new(file, 0, source.len()),
            message: "expected a single expression".into(),
            incomplete: false,
        }),
    }
}

fn check_nesting(source: &str, file: u32) -> Result<(), SyntaxError> {
    use super::brackets::{Problem, check};
    let position = |at: usize| {
        let before = &source[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
        format!("line {line}, column {column}")
    };
    let (at, message, incomplete) = match check(source, MAX_NESTING) {
        Ok(()) => return Ok(()),
        Err(Problem::Unclosed { at, bracket: '"' }) => {
            (at, "this string is never closed".to_string(), true)
        }
        Err(Problem::Unclosed { at, bracket }) => {
            (at, format!("this `{bracket}` is never closed"), true)
        }
        Err(Problem::Unmatched { at, bracket }) => (
            at,
            format!("unexpected `{bracket}`: no bracket is open here"),
            false,
        ),
        Err(Problem::Mismatched {
            at,
            bracket,
            opened,
            open,
        }) => (
            at,
            format!(
                "`{bracket}` cannot close the `{open}` at {}; expected `{}`",
                position(opened),
                match open {
                    '(' => ')',
                    '[' => ']',
                    _ => '}',
                }
            ),
            false,
        ),
        Err(Problem::TooDeep { at }) => (
            at,
            format!("brackets nested deeper than {MAX_NESTING} levels"),
            false,
        ),
    };
    Err(SyntaxError {
        span: Span::new(file, at, next_char_boundary(source, at)),
        message,
        incomplete,
    })
}

fn convert_error(
    error: pest::error::Error<Rule>,
    source: &str,
    file: u32,
    limit: usize,
) -> SyntaxError {
    let (start, end) = match error.location {
        InputLocation::Pos(p) => (p, p),
        InputLocation::Span((s, e)) => (s, e),
    };
    let rest_is_blank = source[start.min(source.len())..]
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    let incomplete = start >= source.len() || (rest_is_blank && unclosed(source));
    let message = match &error.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut wanted: Vec<&'static str> =
                positives.iter().filter_map(|r| describe(*r)).collect();
            wanted.sort();
            wanted.dedup();
            let found = describe_found(source, start);
            if wanted.is_empty() {
                format!("unexpected {found}")
            } else {
                format!("expected {}, found {found}", join_alternatives(&wanted))
            }
        }
        ErrorVariant::CustomError { message } if message == "call limit reached" => format!(
            "too ambiguous to parse within {limit} steps: each `x [ ... ]` may be an index or \
             `x` then a new list, and nesting them doubles the work per level"
        ),
        ErrorVariant::CustomError { message } => message.clone(),
    };
    // At the end of input, point at the last token so the diagnostic has something to show.
    let (start, end) = if start >= source.trim_end().len() && !source.trim().is_empty() {
        let last = source.trim_end().len();
        let begin = source[..last]
            .char_indices()
            .last()
            .map(|(i, _)| i)
            .unwrap_or(0);
        (begin, last)
    } else if end > start {
        (start, end)
    } else {
        (start, next_char_boundary(source, start))
    };
    SyntaxError {
        span: Span::new(file, start, end),
        message,
        incomplete,
    }
}

/// Whether brackets or a string are left open at the end of the source.
fn unclosed(source: &str) -> bool {
    matches!(
        super::brackets::check(source, usize::MAX),
        Err(super::brackets::Problem::Unclosed { .. })
    )
}

fn next_char_boundary(source: &str, at: usize) -> usize {
    source[at.min(source.len())..]
        .chars()
        .next()
        .map(|c| at + c.len_utf8())
        .unwrap_or(at)
}

/// What stands at `at`: a whole word (`let`, `x1`) or a single character.
fn describe_found(source: &str, at: usize) -> String {
    let rest = &source[at.min(source.len())..];
    let word_len = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    match rest.chars().next() {
        None => "end of input".into(),
        Some('\n') => "end of line".into(),
        Some(_) if word_len > 0 => format!("`{}`", &rest[..word_len]),
        Some(c) => format!("`{c}`"),
    }
}

fn join_alternatives(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Human names for the rules that appear in "expected ..." messages.
fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::expr | Rule::operation | Rule::postfix_expr | Rule::expr_stmt => "an expression",
        Rule::ident => "a name",
        Rule::arg_name => "a field name",
        Rule::number => "a number",
        Rule::string => "a string",
        Rule::block => "a block `{ ... }`",
        Rule::call_args => "`(`",
        Rule::index => "`[`",
        Rule::field => "`.`",
        Rule::assign_op => "`=`",
        Rule::range_op => "`..`",
        Rule::or | Rule::and | Rule::eq | Rule::ne | Rule::le | Rule::ge | Rule::lt | Rule::gt => {
            "an operator"
        }
        Rule::add | Rule::sub | Rule::mul | Rule::div | Rule::rem | Rule::pow => "an operator",
        Rule::EOI => "end of input",
        Rule::kw_in => "`in`",
        Rule::kw_to => "`to`",
        Rule::kw_with | Rule::plot_options => "`with`",
        Rule::kw_else => "`else`",
        Rule::confidence => "`at N%`",
        Rule::record_field => "a field `name: value`",
        Rule::sentence_entry => "an entry `\"text\": probability @ score`",
        Rule::param | Rule::params => "a parameter name",
        Rule::argument | Rule::named_arg => "an argument",
        Rule::statement | Rule::let_stmt | Rule::fn_def | Rule::print_stmt | Rule::assert_stmt => {
            "a statement"
        }
        Rule::import_all => "`.*`",
        Rule::format_spec => "a format like `:.3`",
        _ => return None,
    })
}

fn pratt() -> &'static PrattParser<Rule> {
    static PRATT: OnceLock<PrattParser<Rule>> = OnceLock::new();
    PRATT.get_or_init(|| {
        PrattParser::new()
            .op(Op::infix(Rule::or, Assoc::Left))
            .op(Op::infix(Rule::and, Assoc::Left))
            .op(Op::prefix(Rule::not))
            .op(Op::infix(Rule::eq, Assoc::Left)
                | Op::infix(Rule::ne, Assoc::Left)
                | Op::infix(Rule::lt, Assoc::Left)
                | Op::infix(Rule::le, Assoc::Left)
                | Op::infix(Rule::gt, Assoc::Left)
                | Op::infix(Rule::ge, Assoc::Left))
            .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
            .op(Op::infix(Rule::mul, Assoc::Left)
                | Op::infix(Rule::div, Assoc::Left)
                | Op::infix(Rule::rem, Assoc::Left))
            .op(Op::prefix(Rule::neg))
            .op(Op::infix(Rule::pow, Assoc::Right))
    })
}

struct Builder {
    file: u32,
    /// Calls seen so far per callee name, for `CallSite::ordinal`.
    calls: std::cell::RefCell<std::collections::HashMap<Name, u32>>,
    /// How deep the expression being built already is (see [`MAX_EXPR_DEPTH`]).
    depth: std::cell::Cell<usize>,
    /// See [`hash_on_line`].
    hash_on_line: Vec<u32>,
}

/// For each byte offset i of `source`, one past the offset of the last `#` before i on i's
/// line (0 when there is none): tells in O(1) whether a node's text may end in a comment, so
/// that spans of deeply nested nodes cost no rescan of their text.
fn hash_on_line(source: &str) -> Vec<u32> {
    let mut table = Vec::with_capacity(source.len() + 1);
    let mut last = 0u32;
    for (i, byte) in source.bytes().enumerate() {
        table.push(last);
        match byte {
            b'\n' => last = 0,
            b'#' => last = i as u32 + 1,
            _ => {}
        }
    }
    table.push(last);
    table
}

type Built<T> = Result<T, SyntaxError>;

impl Builder {
    /// The next ordinal for calls of `callee`, in the order the parser builds them.
    fn call_site(&self, callee: &Expr) -> CallSite {
        let callee: Name = match &callee.node {
            ExprKind::Ident(name) => name.clone(),
            ExprKind::Field { name, .. } => name.node.clone(),
            _ => Rc::from("call"),
        };
        let mut calls = self.calls.borrow_mut();
        let counter = calls.entry(callee.clone()).or_insert(0);
        let ordinal = *counter;
        *counter += 1;
        CallSite { callee, ordinal }
    }

    fn span(&self, pair: &Pair<Rule>) -> Span {
        let s = pair.as_span();
        let text = pair.as_str();
        // Trailing whitespace is dropped from the end; only a `#` on the last line left means
        // the text may end in a comment and needs the full scan.
        let trimmed = text.trim_end();
        let end = s.start() + trimmed.len();
        let hash = self.hash_on_line.get(end).copied().unwrap_or(0) as usize;
        let len = if hash <= s.start() {
            trimmed.len()
        } else {
            significant_len(text)
        };
        Span::new(self.file, s.start(), s.start() + len)
    }

    fn error(&self, pair: &Pair<Rule>, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            span: self.span(pair),
            message: message.into(),
            incomplete: false,
        }
    }

    fn name(&self, pair: Pair<Rule>) -> Spanned<Name> {
        Spanned {
            span: self.span(&pair),
            node: Rc::from(pair.as_str()),
        }
    }

    fn statements(&self, pairs: Pairs<Rule>) -> Built<Vec<Stmt>> {
        pairs
            .filter(|p| p.as_rule() != Rule::EOI)
            .map(|p| self.statement(p))
            .collect()
    }

    fn statement(&self, pair: Pair<Rule>) -> Built<Stmt> {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = pair.into_inner();
        let node = match rule {
            Rule::let_stmt => {
                skip_keyword(&mut inner);
                let name = self.name(next(&mut inner)?);
                StmtKind::Let(name, self.expr(next(&mut inner)?)?)
            }
            Rule::assign_stmt => {
                let name = self.name(next(&mut inner)?);
                let op = match next(&mut inner)?.as_str() {
                    "+=" => AssignOp::Add,
                    "-=" => AssignOp::Sub,
                    "*=" => AssignOp::Mul,
                    "/=" => AssignOp::Div,
                    _ => AssignOp::Set,
                };
                StmtKind::Assign(name, op, self.expr(next(&mut inner)?)?)
            }
            Rule::fn_def => StmtKind::Fn(Rc::new(self.fn_def(span, inner)?)),
            Rule::doc_block => StmtKind::Doc,
            Rule::import_stmt => {
                skip_keyword(&mut inner);
                let module = self.name(next(&mut inner)?);
                let mut alias = None;
                let mut all = false;
                for p in inner {
                    match p.as_rule() {
                        Rule::import_all => all = true,
                        Rule::ident => alias = Some(self.name(p)),
                        _ => {}
                    }
                }
                StmtKind::Import { module, alias, all }
            }
            Rule::assert_stmt => {
                skip_keyword(&mut inner);
                let cond = self.expr(next(&mut inner)?)?;
                let mut confidence = None;
                let mut message = None;
                for p in inner {
                    match p.as_rule() {
                        Rule::confidence => {
                            let number = p
                                .into_inner()
                                .find(|q| q.as_rule() == Rule::number)
                                .ok_or_else(|| self.internal(span))?;
                            let level = self.number(&number)?;
                            if !(level > 0.0 && level < 100.0) {
                                return Err(self.error(
                                    &number,
                                    "a confidence level is a percentage between 0 and 100",
                                ));
                            }
                            confidence = Some(level);
                        }
                        _ => message = Some(self.expr(p)?),
                    }
                }
                StmtKind::Assert {
                    cond,
                    confidence,
                    message,
                }
            }
            Rule::print_stmt => {
                skip_keyword(&mut inner);
                StmtKind::Print(inner.map(|p| self.expr(p)).collect::<Built<_>>()?)
            }
            Rule::save_stmt => {
                skip_keyword(&mut inner);
                let value = self.expr(next(&mut inner)?)?;
                skip_keyword(&mut inner);
                let path = self.expr(next(&mut inner)?)?;
                StmtKind::Save { value, path }
            }
            Rule::plot_stmt => {
                skip_keyword(&mut inner);
                let mut series = Vec::new();
                let mut path = None;
                let mut options = None;
                for p in inner {
                    match p.as_rule() {
                        Rule::kw_to => {}
                        Rule::plot_options => {
                            let mut parts = p.into_inner();
                            skip_keyword(&mut parts);
                            options = Some(self.expr(next(&mut parts)?)?);
                        }
                        // Every expression before `to` is a series; the last one is the file.
                        _ => {
                            if let Some(previous) = path.take() {
                                series.push(previous);
                            }
                            path = Some(self.expr(p)?);
                        }
                    }
                }
                let path = path.ok_or_else(|| self.internal(span))?;
                StmtKind::Plot {
                    series,
                    path,
                    options,
                }
            }
            Rule::for_stmt => {
                skip_keyword(&mut inner);
                let var = self.name(next(&mut inner)?);
                skip_keyword(&mut inner);
                let iter = self.expr(next(&mut inner)?)?;
                let body = self.statements(next(&mut inner)?.into_inner())?;
                StmtKind::For { var, iter, body }
            }
            Rule::while_stmt => {
                skip_keyword(&mut inner);
                let cond = self.expr(next(&mut inner)?)?;
                let body = self.statements(next(&mut inner)?.into_inner())?;
                StmtKind::While { cond, body }
            }
            Rule::break_stmt => StmtKind::Break,
            Rule::continue_stmt => StmtKind::Continue,
            Rule::return_stmt => {
                skip_keyword(&mut inner);
                StmtKind::Return(inner.next().map(|p| self.expr(p)).transpose()?)
            }
            Rule::expr_stmt => StmtKind::Expr(self.expr(next(&mut inner)?)?),
            other => {
                return Err(SyntaxError {
                    span,
                    message: format!("unexpected {other:?}"),
                    incomplete: false,
                });
            }
        };
        Ok(Spanned { node, span })
    }

    fn internal(&self, span: Span) -> SyntaxError {
        SyntaxError {
            span,
            message: "malformed syntax tree".into(),
            incomplete: false,
        }
    }

    fn fn_def(&self, span: Span, inner: Pairs<Rule>) -> Built<FnDef> {
        let mut doc_lines = Vec::new();
        let mut name = None;
        let mut params = Vec::new();
        let mut body = None;
        for p in inner {
            match p.as_rule() {
                Rule::doc_comment => doc_lines.push(doc_text(p.as_str())),
                Rule::ident => name = Some(Rc::from(p.as_str())),
                Rule::params => params = self.params(p.into_inner())?,
                Rule::block => body = Some(self.block_expr(p)?),
                _ => {}
            }
        }
        Ok(FnDef {
            name,
            doc: (!doc_lines.is_empty()).then(|| doc_lines.join("\n")),
            params,
            body: body.ok_or_else(|| self.internal(span))?,
            span,
        })
    }

    fn params(&self, pairs: Pairs<Rule>) -> Built<Vec<Param>> {
        pairs
            .filter(|p| p.as_rule() == Rule::param)
            .map(|p| {
                let mut inner = p.into_inner();
                let name = self.name(next(&mut inner)?);
                let default = inner.next().map(|d| self.expr(d)).transpose()?;
                Ok(Param { name, default })
            })
            .collect()
    }

    fn block_expr(&self, pair: Pair<Rule>) -> Built<Expr> {
        let span = self.span(&pair);
        Ok(Spanned {
            node: ExprKind::Block(self.statements(pair.into_inner())?),
            span,
        })
    }

    fn expr(&self, pair: Pair<Rule>) -> Built<Expr> {
        match pair.as_rule() {
            Rule::expr => {
                let span = self.span(&pair);
                let mut inner = pair.into_inner();
                let first = self.operation(next(&mut inner)?)?;
                match inner.next() {
                    None => Ok(first),
                    Some(op) => {
                        let inclusive = op.as_str() == "..=";
                        let end = self.operation(next(&mut inner)?)?;
                        Ok(Spanned {
                            node: ExprKind::Range {
                                start: Some(Box::new(first)),
                                end: Some(Box::new(end)),
                                inclusive,
                            },
                            span,
                        })
                    }
                }
            }
            Rule::operation => self.operation(pair),
            _ => self.primary(pair),
        }
    }

    fn operation(&self, pair: Pair<Rule>) -> Built<Expr> {
        // The tree this operation builds is as deep as its operators plus its longest run of
        // prefixes; refuse it before the (recursive) Pratt fold if that is too deep.
        let (mut infix, mut run, mut longest) = (0usize, 0usize, 0usize);
        for part in pair.clone().into_inner() {
            match part.as_rule() {
                Rule::neg | Rule::not => {
                    run += 1;
                    longest = longest.max(run);
                }
                Rule::postfix_expr => run = 0,
                _ => infix += 1,
            }
        }
        let outer = self.depth.get();
        let depth = outer + infix + longest + 1;
        if depth > MAX_EXPR_DEPTH {
            return Err(SyntaxError {
                span: self.span(&pair),
                message: format!(
                    "this expression nests {depth} levels deep (operators, prefixes and brackets), more than the {MAX_EXPR_DEPTH} allowed; split it with `let`"
                ),
                incomplete: false,
            });
        }
        self.depth.set(depth);
        let built = self.fold_operation(pair);
        self.depth.set(outer);
        built
    }

    fn fold_operation(&self, pair: Pair<Rule>) -> Built<Expr> {
        pratt()
            .map_primary(|p| self.postfix_expr(p))
            .map_prefix(|op, rhs| {
                let rhs = rhs?;
                let span = self.span(&op).to(rhs.span);
                let op = if op.as_rule() == Rule::neg {
                    UnaryOp::Neg
                } else {
                    UnaryOp::Not
                };
                // Fold negative literals so `-3` is a number, not an operation.
                if let (UnaryOp::Neg, ExprKind::Number(x)) = (op, &rhs.node) {
                    return Ok(Spanned {
                        node: ExprKind::Number(-x),
                        span,
                    });
                }
                Ok(Spanned {
                    node: ExprKind::Unary(op, Box::new(rhs)),
                    span,
                })
            })
            .map_infix(|lhs, op, rhs| {
                let (lhs, rhs) = (lhs?, rhs?);
                let span = lhs.span.to(rhs.span);
                let op = match op.as_rule() {
                    Rule::or => BinaryOp::Or,
                    Rule::and => BinaryOp::And,
                    Rule::eq => BinaryOp::Eq,
                    Rule::ne => BinaryOp::Ne,
                    Rule::lt => BinaryOp::Lt,
                    Rule::le => BinaryOp::Le,
                    Rule::gt => BinaryOp::Gt,
                    Rule::ge => BinaryOp::Ge,
                    Rule::add => BinaryOp::Add,
                    Rule::sub => BinaryOp::Sub,
                    Rule::mul => BinaryOp::Mul,
                    Rule::div => BinaryOp::Div,
                    Rule::rem => BinaryOp::Rem,
                    _ => BinaryOp::Pow,
                };
                Ok(Spanned {
                    node: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                    span,
                })
            })
            .parse(pair.into_inner())
    }

    fn postfix_expr(&self, pair: Pair<Rule>) -> Built<Expr> {
        let mut inner = pair.into_inner();
        let mut expr = self.primary(next(&mut inner)?)?;
        for post in inner {
            let span = expr.span.to(self.span(&post));
            let node = match post.as_rule() {
                Rule::call_args => {
                    let args = post
                        .into_inner()
                        .map(|a| self.argument(a))
                        .collect::<Built<Vec<_>>>()?;
                    let site = self.call_site(&expr);
                    ExprKind::Call {
                        callee: Box::new(expr),
                        args,
                        site,
                    }
                }
                Rule::index => {
                    let index = self.slice(next(&mut post.into_inner())?)?;
                    ExprKind::Index {
                        target: Box::new(expr),
                        index: Box::new(index),
                    }
                }
                Rule::field => {
                    let name = self.name(next(&mut post.into_inner())?);
                    ExprKind::Field {
                        target: Box::new(expr),
                        name,
                    }
                }
                _ => return Err(self.error(&post, "unexpected postfix")),
            };
            expr = Spanned { node, span };
        }
        Ok(expr)
    }

    fn slice(&self, pair: Pair<Rule>) -> Built<Expr> {
        let span = self.span(&pair);
        let mut start = None;
        let mut end = None;
        let mut inclusive = false;
        let mut seen_op = false;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::range_op => {
                    inclusive = p.as_str() == "..=";
                    seen_op = true;
                }
                _ if seen_op => end = Some(Box::new(self.operation(p)?)),
                _ => start = Some(Box::new(self.operation(p)?)),
            }
        }
        if !seen_op {
            // `x[i]`: the operation itself.
            if let Some(index) = start {
                return Ok(*index);
            }
        }
        Ok(Spanned {
            node: ExprKind::Range {
                start,
                end,
                inclusive,
            },
            span,
        })
    }

    fn argument(&self, pair: Pair<Rule>) -> Built<Arg> {
        let inner = next(&mut pair.into_inner())?;
        if inner.as_rule() == Rule::named_arg {
            let mut parts = inner.into_inner();
            let name = self.name(next(&mut parts)?);
            let value = self.expr(next(&mut parts)?)?;
            Ok(Arg {
                name: Some(name),
                value,
            })
        } else {
            Ok(Arg {
                name: None,
                value: self.expr(inner)?,
            })
        }
    }

    fn number(&self, pair: &Pair<Rule>) -> Built<f64> {
        let text: String = pair.as_str().chars().filter(|c| *c != '_').collect();
        text.parse::<f64>()
            .map_err(|_| self.error(pair, format!("`{}` is not a valid number", pair.as_str())))
    }

    fn fields(&self, pairs: Pairs<Rule>) -> Built<Vec<Field>> {
        pairs
            .filter(|p| p.as_rule() == Rule::record_field)
            .map(|p| {
                let mut inner = p.into_inner();
                let name = self.name(next(&mut inner)?);
                let value = self.expr(next(&mut inner)?)?;
                Ok(Field { name, value })
            })
            .collect()
    }

    fn primary(&self, pair: Pair<Rule>) -> Built<Expr> {
        let span = self.span(&pair);
        let node = match pair.as_rule() {
            Rule::expr | Rule::operation => return self.expr(pair),
            Rule::number => ExprKind::Number(self.number(&pair)?),
            Rule::boolean => ExprKind::Bool(pair.as_str() == "true"),
            Rule::none_lit => ExprKind::None,
            Rule::ident => ExprKind::Ident(Rc::from(pair.as_str())),
            Rule::string => ExprKind::Str(self.string(pair)?),
            Rule::list => ExprKind::List(
                pair.into_inner()
                    .map(|p| self.expr(p))
                    .collect::<Built<_>>()?,
            ),
            Rule::record => ExprKind::Record(self.fields(pair.into_inner())?),
            Rule::block => return self.block_expr(pair),
            Rule::lambda => {
                let mut params = Vec::new();
                let mut body = None;
                for p in pair.into_inner() {
                    match p.as_rule() {
                        Rule::param => params.extend(self.params(Pairs::single(p))?),
                        _ => body = Some(self.expr(p)?),
                    }
                }
                ExprKind::Lambda(Rc::new(FnDef {
                    name: None,
                    doc: None,
                    params,
                    body: body.ok_or_else(|| self.internal(span))?,
                    span,
                }))
            }
            Rule::if_expr => {
                let mut inner = pair.into_inner();
                skip_keyword(&mut inner);
                let cond = self.expr(next(&mut inner)?)?;
                let then = self.block_expr(next(&mut inner)?)?;
                skip_keyword(&mut inner);
                let otherwise = match inner.next() {
                    None => None,
                    Some(p) if p.as_rule() == Rule::block => Some(Box::new(self.block_expr(p)?)),
                    Some(p) => Some(Box::new(self.primary(p)?)),
                };
                ExprKind::If {
                    cond: Box::new(cond),
                    then: Box::new(then),
                    otherwise,
                }
            }
            Rule::sweep_expr => {
                let mut vars = Vec::new();
                let mut body = Vec::new();
                let mut fields = Vec::new();
                for p in pair.into_inner() {
                    match p.as_rule() {
                        Rule::sweep_var => {
                            let mut inner = p.into_inner();
                            let name = self.name(next(&mut inner)?);
                            skip_keyword(&mut inner);
                            vars.push((name, self.expr(next(&mut inner)?)?));
                        }
                        Rule::sweep_body => {
                            let (stmts, rest): (Vec<_>, Vec<_>) = p
                                .into_inner()
                                .partition(|q| q.as_rule() != Rule::record_field);
                            body = stmts
                                .into_iter()
                                .map(|s| self.statement(s))
                                .collect::<Built<_>>()?;
                            for f in rest {
                                fields.extend(self.fields(Pairs::single(f))?);
                            }
                        }
                        _ => {}
                    }
                }
                ExprKind::Sweep { vars, body, fields }
            }
            Rule::sentences_lit => {
                let mut entries = Vec::new();
                for e in pair.into_inner() {
                    let mut inner = e.into_inner();
                    let text = self.expr(next(&mut inner)?)?;
                    let prob = self.expr(next(&mut inner)?)?;
                    let score = inner.next().map(|s| self.expr(s)).transpose()?;
                    entries.push(SentenceEntry { text, prob, score });
                }
                ExprKind::Sentences(entries)
            }
            _ => return Err(self.error(&pair, "unexpected syntax")),
        };
        Ok(Spanned { node, span })
    }

    fn string(&self, pair: Pair<Rule>) -> Built<Vec<StrPart>> {
        let mut parts = Vec::new();
        let mut text = String::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::text_chunk => text.push_str(p.as_str()),
                Rule::escape => {
                    let c = p.as_str().chars().nth(1).unwrap_or('\\');
                    text.push(match c {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        '\\' | '"' | '{' | '}' => c,
                        _ => return Err(self.error(&p, format!("unknown escape `\\{c}` (known: \\n \\t \\r \\0 \\\\ \\\" \\{{ \\}})"))),
                    });
                }
                Rule::interpolation => {
                    if !text.is_empty() {
                        parts.push(StrPart::Text(std::mem::take(&mut text)));
                    }
                    let mut inner = p.into_inner();
                    let expr = self.expr(next(&mut inner)?)?;
                    let spec = inner.next().map(|s| s.as_str()[1..].to_string());
                    parts.push(StrPart::Interp { expr, spec });
                }
                _ => {}
            }
        }
        if !text.is_empty() || parts.is_empty() {
            parts.push(StrPart::Text(text));
        }
        Ok(parts)
    }
}

/// The length of `text` without the whitespace and comments that follow its last token.
///
/// pest skips whitespace and comments between the parts of a rule, so a rule that ends with an
/// optional part (`return expr?`) also spans the skipped text after it; diagnostics should not
/// underline that.
fn significant_len(text: &str) -> usize {
    let last_line = text.rsplit('\n').next().unwrap_or("");
    if !text.ends_with(char::is_whitespace) && !last_line.contains('#') {
        return text.len();
    }
    /// What encloses the current character.
    #[derive(PartialEq)]
    enum Nest {
        Str,
        Interpolation,
        Brace,
    }
    let mut stack = Vec::new();
    let mut end = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let mut after = i + c.len_utf8();
        if stack.last() == Some(&Nest::Str) {
            match c {
                '\\' => {
                    if let Some((j, escaped)) = chars.next() {
                        after = j + escaped.len_utf8();
                    }
                }
                '"' => {
                    stack.pop();
                }
                '{' => stack.push(Nest::Interpolation),
                _ => {}
            }
            end = after;
            continue;
        }
        match c {
            '#' => {
                // A `##` doc comment is a token; a `#` comment is skipped text.
                let doc = chars.peek().is_some_and(|(_, next)| *next == '#');
                while let Some((j, next)) = chars.peek().copied() {
                    if next == '\n' {
                        break;
                    }
                    chars.next();
                    if doc && !next.is_whitespace() {
                        end = j + next.len_utf8();
                    }
                }
                if doc {
                    end = end.max(after);
                }
                continue;
            }
            c if c.is_whitespace() => continue,
            '"' => stack.push(Nest::Str),
            '{' => stack.push(Nest::Brace),
            '}' if matches!(stack.last(), Some(Nest::Brace | Nest::Interpolation)) => {
                stack.pop();
            }
            _ => {}
        }
        end = after;
    }
    end
}

/// The text of a `## ...` doc comment line.
fn doc_text(line: &str) -> String {
    let text = line.trim_start_matches('#');
    text.strip_prefix(' ')
        .unwrap_or(text)
        .trim_end()
        .to_string()
}

/// Skip a keyword token if it is next (keywords are non-silent so spans stay exact).
fn skip_keyword(pairs: &mut Pairs<Rule>) {
    if let Some(p) = pairs.peek()
        && matches!(
            p.as_rule(),
            Rule::kw_let
                | Rule::kw_fn
                | Rule::kw_if
                | Rule::kw_else
                | Rule::kw_for
                | Rule::kw_while
                | Rule::kw_sweep
                | Rule::kw_import
                | Rule::kw_assert
                | Rule::kw_print
                | Rule::kw_return
                | Rule::kw_save
                | Rule::kw_plot
                | Rule::kw_with
                | Rule::kw_in
                | Rule::kw_to
                | Rule::kw_as
        )
    {
        pairs.next();
    }
}

fn next<'a>(pairs: &mut Pairs<'a, Rule>) -> Built<Pair<'a, Rule>> {
    pairs.next().ok_or(SyntaxError {
        span: Span::default(),
        message: "malformed syntax tree".into(),
        incomplete: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(src: &str) -> ExprKind {
        parse_expression(src, 0)
            .map(|e| e.node)
            .unwrap_or_else(|e| panic!("{src}: {e:?}"))
    }

    #[test]
    fn precedence_follows_arithmetic() {
        let ExprKind::Binary(BinaryOp::Add, _, rhs) = expr("1 + 2 * 3") else {
            panic!("not add")
        };
        assert!(matches!(rhs.node, ExprKind::Binary(BinaryOp::Mul, _, _)));
        let ExprKind::Unary(UnaryOp::Neg, inner) = expr("-x ^ 2") else {
            panic!("not neg")
        };
        assert!(matches!(inner.node, ExprKind::Binary(BinaryOp::Pow, _, _)));
        assert!(matches!(
            expr("0..n + 1"),
            ExprKind::Range {
                inclusive: false,
                ..
            }
        ));
        assert_eq!(expr("1e-4"), ExprKind::Number(1e-4));
        assert_eq!(expr("-2"), ExprKind::Number(-2.0));
    }

    #[test]
    fn slices_and_calls() {
        let ExprKind::Index { index, .. } = expr("s[..n]") else {
            panic!("not index")
        };
        assert!(matches!(
            index.node,
            ExprKind::Range {
                start: None,
                end: Some(_),
                ..
            }
        ));
        let ExprKind::Call { args, .. } = expr("f(x, seed: 7)") else {
            panic!("not call")
        };
        assert_eq!(args.len(), 2);
        assert_eq!(args[1].name.as_ref().map(|n| &*n.node), Some("seed"));
    }

    #[test]
    fn strings_interpolate() {
        let ExprKind::Str(parts) = expr(r#""a {x:.2} b\n""#) else {
            panic!("not str")
        };
        assert_eq!(parts.len(), 3);
        assert!(matches!(&parts[1], StrPart::Interp { spec: Some(s), .. } if s == ".2"));
    }

    #[test]
    fn incomplete_input_is_told_apart_from_wrong_input() {
        for src in ["1 +", "let x = (1", "fn f(a) {", "\"abc", "[1, 2,\n"] {
            let err = parse_program(src, 0).expect_err(src);
            assert!(err.incomplete, "{src} should be incomplete: {err:?}");
        }
        for src in ["1 + )", "let = 3", "x ]"] {
            let err = parse_program(src, 0).expect_err(src);
            assert!(!err.incomplete, "{src} should be wrong: {err:?}");
        }
    }

    #[test]
    fn keywords_do_not_swallow_names() {
        assert!(parse_program("for x in input { print x }", 0).is_ok());
        assert!(parse_program("let letter = 1\nprint letter", 0).is_ok());
        assert!(parse_program("let sentences = 3\nprint sentences", 0).is_ok());
    }

    #[test]
    fn sweeps_and_sentences() {
        let src = "sweep n in 0..=3, a in [1, 2] { let k = n * a\n kl: k, b: n }";
        assert!(
            matches!(expr(src), ExprKind::Sweep { ref vars, ref fields, .. } if vars.len() == 2 && fields.len() == 2)
        );
        let src = r#"sentences { "Go away.": 0.7 @ -1, "Hi.": 0.3 @ 1 }"#;
        assert!(matches!(expr(src), ExprKind::Sentences(ref e) if e.len() == 2));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let src = "(".repeat(10_000);
        assert!(parse_program(&src, 0).is_err());
    }
    fn program(src: &str) -> Vec<Stmt> {
        parse_program(src, 0).unwrap_or_else(|e| panic!("{src}: {e:?}"))
    }

    fn text_of(src: &str, span: Span) -> &str {
        &src[span.start as usize..span.end as usize]
    }

    #[test]
    fn number_literals() {
        assert_eq!(expr("1_000_000"), ExprKind::Number(1e6));
        assert_eq!(expr("2.5E3"), ExprKind::Number(2500.0));
        assert_eq!(expr("1e+3"), ExprKind::Number(1000.0));
        assert_eq!(expr("0.125"), ExprKind::Number(0.125));
        // `1.` is not a number: a field access needs a name after the dot.
        assert!(parse_expression("1.", 0).is_err());
    }

    #[test]
    fn operators_group_as_documented() {
        // `^` is right-associative.
        let ExprKind::Binary(BinaryOp::Pow, lhs, rhs) = expr("2 ^ 3 ^ 2") else {
            panic!("not pow")
        };
        assert_eq!(lhs.node, ExprKind::Number(2.0));
        assert!(matches!(rhs.node, ExprKind::Binary(BinaryOp::Pow, _, _)));
        // `-` is left-associative.
        let ExprKind::Binary(BinaryOp::Sub, lhs, _) = expr("10 - 4 - 3") else {
            panic!("not sub")
        };
        assert!(matches!(lhs.node, ExprKind::Binary(BinaryOp::Sub, _, _)));
        // `not` binds looser than comparisons, `and` tighter than `or`.
        let ExprKind::Unary(UnaryOp::Not, negated) = expr("not a == b") else {
            panic!("not not")
        };
        assert!(matches!(negated.node, ExprKind::Binary(BinaryOp::Eq, _, _)));
        let ExprKind::Binary(BinaryOp::Or, _, rhs) = expr("a or b and c") else {
            panic!("not or")
        };
        assert!(matches!(rhs.node, ExprKind::Binary(BinaryOp::And, _, _)));
        // Postfix operators bind tightest.
        let ExprKind::Unary(UnaryOp::Neg, inner) = expr("-f(1)[0].x") else {
            panic!("not neg")
        };
        assert!(matches!(inner.node, ExprKind::Field { .. }));
        assert!(matches!(
            expr("a..=b"),
            ExprKind::Range {
                inclusive: true,
                ..
            }
        ));
    }

    #[test]
    fn escapes_and_their_errors() {
        let ExprKind::Str(parts) = expr(r#""\n\t\r\0\\\"\{\}""#) else {
            panic!("not str")
        };
        assert_eq!(parts, vec![StrPart::Text("\n\t\r\0\\\"{}".into())]);
        let err = parse_expression(r#""a\qb""#, 0).expect_err("unknown escape");
        assert!(
            err.message.contains("unknown escape `\\q`"),
            "{}",
            err.message
        );
        assert_eq!((err.span.start, err.span.end), (2, 4));
        // The empty string is one empty text part.
        assert_eq!(
            expr("\"\""),
            ExprKind::Str(vec![StrPart::Text(String::new())])
        );
    }

    #[test]
    fn interpolations_hold_any_expression() {
        let ExprKind::Str(parts) = expr(r#""n={f("a", {k: 1}.k)}, e={x:.3e}""#) else {
            panic!("not str")
        };
        assert_eq!(parts.len(), 4);
        assert!(
            matches!(&parts[1], StrPart::Interp { expr, spec: None } if matches!(expr.node, ExprKind::Call { .. }))
        );
        assert!(matches!(&parts[3], StrPart::Interp { spec: Some(s), .. } if s == ".3e"));
    }

    #[test]
    fn statements_of_every_kind() {
        let src = "## Doc line one.\n##   two\nfn f(a, b = 2,) { return a + b }\n\
                   let x = 1; x += 2; x -= 1; x *= 3; x /= 2; x = 0\n\
                   import bounds\nimport bounds as b\nimport bounds.*\n\
                   assert x == 0\nassert x < 1 at 95%, \"msg\"\n\
                   print x, 2\nsave x to \"x.json\"\nfor i in 0..3 { print i }\n## loose doc\n";
        let stmts = program(src);
        let kinds: Vec<&str> = stmts
            .iter()
            .map(|s| match &s.node {
                StmtKind::Fn(_) => "fn",
                StmtKind::Let(..) => "let",
                StmtKind::Assign(..) => "assign",
                StmtKind::Import { .. } => "import",
                StmtKind::Assert { .. } => "assert",
                StmtKind::Print(_) => "print",
                StmtKind::Save { .. } => "save",
                StmtKind::Plot { .. } => "plot",
                StmtKind::For { .. } => "for",
                StmtKind::While { .. } => "while",
                StmtKind::Break => "break",
                StmtKind::Continue => "continue",
                StmtKind::Return(_) => "return",
                StmtKind::Expr(_) => "expr",
                StmtKind::Doc => "doc",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "fn", "let", "assign", "assign", "assign", "assign", "assign", "import", "import",
                "import", "assert", "assert", "print", "save", "for", "doc"
            ]
        );
        let StmtKind::Fn(def) = &stmts[0].node else {
            panic!("not fn")
        };
        assert_eq!(def.doc.as_deref(), Some("Doc line one.\n  two"));
        assert_eq!(def.params.len(), 2);
        assert!(def.params[1].default.is_some());
        let ops: Vec<AssignOp> = stmts[2..7]
            .iter()
            .filter_map(|s| match &s.node {
                StmtKind::Assign(_, op, _) => Some(*op),
                _ => None,
            })
            .collect();
        assert_eq!(
            ops,
            [
                AssignOp::Add,
                AssignOp::Sub,
                AssignOp::Mul,
                AssignOp::Div,
                AssignOp::Set
            ]
        );
        let imports: Vec<(bool, Option<&str>)> = stmts[7..10]
            .iter()
            .filter_map(|s| match &s.node {
                StmtKind::Import { alias, all, .. } => {
                    Some((*all, alias.as_ref().map(|a| &*a.node)))
                }
                _ => None,
            })
            .collect();
        assert_eq!(imports, [(false, None), (false, Some("b")), (true, None)]);
        assert!(matches!(
            &stmts[10].node,
            StmtKind::Assert {
                confidence: None,
                message: None,
                ..
            }
        ));
        assert!(
            matches!(&stmts[11].node, StmtKind::Assert { confidence: Some(c), message: Some(_), .. } if *c == 95.0)
        );
    }

    #[test]
    fn confidence_levels_are_percentages() {
        for src in [
            "assert x > 1 at 0%",
            "assert x > 1 at 100%",
            "assert x > 1 at 250%",
        ] {
            let err = parse_program(src, 0).expect_err(src);
            assert!(err.message.contains("percentage"), "{src}: {}", err.message);
        }
        assert!(parse_program("assert x > 1 at 99.9%", 0).is_ok());
    }

    #[test]
    fn braces_are_records_or_blocks() {
        assert_eq!(expr("{}"), ExprKind::Record(vec![]));
        assert!(matches!(expr("{a: 1, b: 2,}"), ExprKind::Record(ref f) if f.len() == 2));
        assert!(matches!(expr("{ x }"), ExprKind::Block(ref s) if s.len() == 1));
        assert!(matches!(expr("{ let y = 1\n y }"), ExprKind::Block(ref s) if s.len() == 2));
    }

    #[test]
    fn lambdas_and_conditionals() {
        assert!(matches!(expr("|| 1"), ExprKind::Lambda(ref d) if d.params.is_empty()));
        assert!(
            matches!(expr("|x, k = 2| x * k"), ExprKind::Lambda(ref d) if d.params.len() == 2 && d.params[1].default.is_some())
        );
        let ExprKind::If {
            otherwise: Some(other),
            ..
        } = expr("if a { 1 } else if b { 2 } else { 3 }")
        else {
            panic!("not if-else")
        };
        assert!(matches!(
            other.node,
            ExprKind::If {
                otherwise: Some(_),
                ..
            }
        ));
        assert!(matches!(
            expr("if a { 1 }"),
            ExprKind::If {
                otherwise: None,
                ..
            }
        ));
    }

    #[test]
    fn trailing_commas_and_separators() {
        assert!(matches!(expr("[1, 2,]"), ExprKind::List(ref items) if items.len() == 2));
        assert!(matches!(expr("f(1, k: 2,)"), ExprKind::Call { ref args, .. } if args.len() == 2));
        assert_eq!(program("let a = 1; let b = 2;print a").len(), 3);
        assert_eq!(program("let a = 1 let b = 2").len(), 2);
        // A line starting with an operator continues the expression before it.
        assert_eq!(program("print a\n- b").len(), 1);
        assert!(parse_expression("1; 2", 0).is_err());
    }

    #[test]
    fn names_may_start_with_keywords() {
        let names = [
            "format", "notable", "android", "index", "inner", "fnord", "iffy", "true_", "nonempty",
            "saved", "to", "at", "as",
        ];
        for name in names {
            let src = format!("let {name} = 1\nprint {name}");
            assert!(parse_program(&src, 0).is_ok(), "{name}");
        }
        for keyword in [
            "let", "fn", "if", "for", "in", "true", "none", "not", "save", "return",
        ] {
            assert!(
                parse_program(&format!("let {keyword} = 1"), 0).is_err(),
                "{keyword}"
            );
        }
    }

    #[test]
    fn errors_point_at_what_was_found() {
        let src = "let x = 1\nprint x +\nlet y = 2\n";
        let err = parse_program(src, 0).expect_err("syntax error");
        assert_eq!(err.message, "expected an expression, found `let`");
        assert_eq!(text_of(src, err.span), "l");
        assert!(!err.incomplete);
        let err = parse_program("print 1 +", 0).expect_err("incomplete");
        assert!(
            err.message.ends_with("found end of input"),
            "{}",
            err.message
        );
        assert_eq!(
            (err.span.start, err.span.end),
            (8, 9),
            "the last token is shown"
        );
        assert_eq!(describe_found("abc_1 + 2", 0), "`abc_1`");
        assert_eq!(describe_found(") x", 0), "`)`");
        assert_eq!(describe_found("", 0), "end of input");
        assert_eq!(describe_found("\nx", 0), "end of line");
    }

    #[test]
    fn spans_leave_out_trailing_whitespace_and_comments() {
        let src = "return 1   # why\nassert x == 1 at 95%  \nx += 1 # more\n";
        let stmts = program(src);
        let spans: Vec<&str> = stmts.iter().map(|s| text_of(src, s.span)).collect();
        assert_eq!(spans, ["return 1", "assert x == 1 at 95%", "x += 1"]);
        let src = "return # bare\n";
        assert_eq!(text_of(src, program(src)[0].span), "return");
    }

    #[test]
    fn significant_length_understands_strings_and_doc_comments() {
        assert_eq!(significant_len("x + 1"), 5);
        assert_eq!(significant_len("x + 1  \n\t"), 5);
        assert_eq!(significant_len("x # c\n  # d\n"), 1);
        assert_eq!(significant_len(r#""a # b"  "#), 7);
        assert_eq!(significant_len(r#""a {f("}")} # b" # c"#), 16);
        assert_eq!(significant_len(r#""q\" # " "#), 8);
        assert_eq!(significant_len("## doc  \n"), 6);
        assert_eq!(significant_len("{ {a: 1} } # c"), 10);
        assert_eq!(significant_len("   "), 0);
        assert_eq!(significant_len("é  "), 2);
    }

    #[test]
    fn every_node_records_its_file() {
        let stmts = parse_program("print 1 + 2", 7).unwrap_or_else(|e| panic!("{e:?}"));
        let StmtKind::Print(exprs) = &stmts[0].node else {
            panic!("not print")
        };
        assert_eq!(stmts[0].span.file, 7);
        assert_eq!(exprs[0].span.file, 7);
        assert_eq!((exprs[0].span.start, exprs[0].span.end), (6, 11));
    }
}
