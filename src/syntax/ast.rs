//! The spanned syntax tree: every node keeps the byte range it came from, so any error found
//! while running can point back at the exact source text.

use std::rc::Rc;

/// An interned-ish name: cheap to clone, compared by content.
pub type Name = Rc<str>;

/// A byte range in one source file (`file` indexes the interpreter's source map).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
    pub file: u32,
}

impl Span {
    pub fn new(file: u32, start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
            file,
        }
    }

    /// The smallest span covering both (same file assumed).
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
            file: self.file,
        }
    }

    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub node: T,
    pub span: Span,
}

pub type Expr = Spanned<ExprKind>;
pub type Stmt = Spanned<StmtKind>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
            BinaryOp::Pow => "^",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        )
    }
}

/// One piece of a string literal: literal text or an interpolated `{expr:spec}`.
#[derive(Clone, Debug, PartialEq)]
pub enum StrPart {
    Text(String),
    Interp { expr: Expr, spec: Option<String> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Spanned<Name>>,
    pub value: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: Spanned<Name>,
    pub default: Option<Expr>,
}

/// A user function or lambda.
#[derive(Clone, Debug, PartialEq)]
pub struct FnDef {
    pub name: Option<Name>,
    pub doc: Option<String>,
    pub params: Vec<Param>,
    pub body: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: Spanned<Name>,
    pub value: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SentenceEntry {
    pub text: Expr,
    pub prob: Expr,
    pub score: Option<Expr>,
}

/// Which call this is among the calls written in its source file that name the same
/// function: the `k` of the `k`-th `sample(...)`. Default seed streams are named by it, so
/// they do not move when comments, blank lines or formatting change.
#[derive(Clone, Debug, PartialEq)]
pub struct CallSite {
    /// The callee as written: a name, the last name of `a.b`, or `call`.
    pub callee: Name,
    pub ordinal: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Number(f64),
    Str(Vec<StrPart>),
    Bool(bool),
    None,
    Ident(Name),
    List(Vec<Expr>),
    Record(Vec<Field>),
    Range {
        start: Option<Box<Expr>>,
        end: Option<Box<Expr>>,
        inclusive: bool,
    },
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Call {
        callee: Box<Expr>,
        args: Vec<Arg>,
        site: CallSite,
    },
    Index {
        target: Box<Expr>,
        index: Box<Expr>,
    },
    Field {
        target: Box<Expr>,
        name: Spanned<Name>,
    },
    Lambda(Rc<FnDef>),
    If {
        cond: Box<Expr>,
        then: Box<Expr>,
        otherwise: Option<Box<Expr>>,
    },
    Block(Vec<Stmt>),
    Sweep {
        vars: Vec<(Spanned<Name>, Expr)>,
        body: Vec<Stmt>,
        fields: Vec<Field>,
    },
    Sentences(Vec<SentenceEntry>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignOp {
    Set,
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    Let(Spanned<Name>, Expr),
    Assign(Spanned<Name>, AssignOp, Expr),
    Fn(Rc<FnDef>),
    Import {
        module: Spanned<Name>,
        alias: Option<Spanned<Name>>,
        all: bool,
    },
    Assert {
        cond: Expr,
        confidence: Option<f64>,
        message: Option<Expr>,
    },
    Print(Vec<Expr>),
    Save {
        value: Expr,
        path: Expr,
    },
    /// `plot a, b to "file.svg" with {options}`.
    Plot {
        series: Vec<Expr>,
        path: Expr,
        options: Option<Expr>,
    },
    For {
        var: Spanned<Name>,
        iter: Expr,
        body: Vec<Stmt>,
    },
    /// `while cond { ... }`: the body runs as long as `cond` is true.
    While {
        cond: Expr,
        body: Vec<Stmt>,
    },
    /// Leaves the innermost `for` or `while`.
    Break,
    /// Goes on with the next step of the innermost `for` or `while`.
    Continue,
    Return(Option<Expr>),
    Expr(Expr),
    /// Doc comments not attached to a function: kept so tools can show them, evaluated as nothing.
    Doc,
}
