//! One error type for the whole interpreter: a kind, a message, and a span attached late
//! (a builtin reports what went wrong; the call site adds where). Rendered with miette.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

use crate::syntax::{Span, SyntaxError};

/// What failed, which decides the process exit code and the diagnostic's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Syntax,
    Name,
    Type,
    Argument,
    Value,
    Index,
    Arithmetic,
    Io,
    Model,
    Assertion,
    Interrupted,
}

impl ErrorKind {
    fn code(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "beb::syntax",
            ErrorKind::Name => "beb::name",
            ErrorKind::Type => "beb::type",
            ErrorKind::Argument => "beb::argument",
            ErrorKind::Value => "beb::value",
            ErrorKind::Index => "beb::index",
            ErrorKind::Arithmetic => "beb::arithmetic",
            ErrorKind::Io => "beb::io",
            ErrorKind::Model => "beb::model",
            ErrorKind::Assertion => "beb::assertion",
            ErrorKind::Interrupted => "beb::interrupted",
        }
    }
}

/// A failure with everything needed to explain it.
#[derive(Clone, Debug)]
pub struct BebError {
    pub kind: ErrorKind,
    pub message: String,
    pub span: Option<Span>,
    pub label: Option<String>,
    pub help: Option<String>,
    /// Extra labelled spans (e.g. both sides of a failed comparison).
    pub notes: Vec<(Span, String)>,
    source: Option<NamedSource<Arc<str>>>,
}

pub type BebResult<T> = Result<T, BebError>;

impl BebError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> BebError {
        BebError {
            kind,
            message: message.into(),
            span: None,
            label: None,
            help: None,
            notes: Vec::new(),
            source: None,
        }
    }

    pub fn type_error(message: impl Into<String>) -> BebError {
        BebError::new(ErrorKind::Type, message)
    }

    pub fn value(message: impl Into<String>) -> BebError {
        BebError::new(ErrorKind::Value, message)
    }

    pub fn argument(message: impl Into<String>) -> BebError {
        BebError::new(ErrorKind::Argument, message)
    }

    /// Attach a span unless a more precise one is already there.
    pub fn at(mut self, span: Span) -> BebError {
        if self.span.is_none() {
            self.span = Some(span);
        }
        self
    }

    pub fn with_label(mut self, label: impl Into<String>) -> BebError {
        if self.label.is_none() {
            self.label = Some(label.into());
        }
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> BebError {
        if self.help.is_none() {
            self.help = Some(help.into());
        }
        self
    }

    pub fn with_note(mut self, span: Span, text: impl Into<String>) -> BebError {
        self.notes.push((span, text.into()));
        self
    }

    /// Attach the source text the spans point into (done once, when the error is rendered).
    /// Lines longer than [`SHOWN_LINE`] characters are cut to a window around the spans:
    /// the renderer cannot lay out columns past 65,535, and no reader wants them.
    pub fn with_source(mut self, name: &str, text: Arc<str>) -> BebError {
        let text = match self.span {
            Some(primary) if text.lines().any(|l| l.len() > SHOWN_LINE) => {
                let clipped = Clipped::new(&text, primary.start as usize);
                // The excerpt's column is not the file's: say where the span really is.
                let (line, column) = line_col(&text, primary.start as usize);
                let at = format!("line {line}, column {column}");
                self.label = Some(match self.label.take() {
                    Some(label) => format!("{label} ({at})"),
                    None => at,
                });
                let file = primary.file;
                let moved = |s: Span| Span {
                    start: clipped.map(s.start as usize) as u32,
                    end: clipped.map(s.end as usize) as u32,
                    file: s.file,
                };
                self.span = Some(moved(primary));
                for (s, _) in &mut self.notes {
                    if s.file == file {
                        *s = moved(*s);
                    }
                }
                Arc::from(clipped.text)
            }
            _ => text,
        };
        self.source = Some(NamedSource::new(name, text));
        self
    }

    pub fn from_syntax(error: SyntaxError) -> BebError {
        BebError::new(
            ErrorKind::Syntax,
            format!("syntax error: {}", error.message),
        )
        .at(error.span)
        .with_label(error.message)
    }

    /// The process exit status for this error: 1 for a failed assertion, 2 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::Assertion => 1,
            _ => 2,
        }
    }
}

impl fmt::Display for BebError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BebError {}

fn miette_span(span: Span) -> miette::SourceSpan {
    (span.start as usize, span.len()).into()
}

impl Diagnostic for BebError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.kind.code()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.source.as_ref()?;
        let span = self.span?;
        let primary = LabeledSpan::new_primary_with_span(self.label.clone(), miette_span(span));
        let notes = self
            .notes
            .iter()
            .filter(move |(s, _)| s.file == span.file)
            .map(|(s, text)| LabeledSpan::new_with_span(Some(text.clone()), miette_span(*s)));
        Some(Box::new(std::iter::once(primary).chain(notes)))
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`; an offset past
/// the end or inside a character counts from the character boundary before it.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut cut = offset.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let before = &text[..cut];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The most characters of one source line a diagnostic shows.
pub const SHOWN_LINE: usize = 400;

/// A source text whose long lines are cut to [`SHOWN_LINE`] characters around a focus, with
/// the map from old byte offsets to new ones.
struct Clipped {
    text: String,
    /// (old start of its line, old start, old end, new start) of each kept piece, one a
    /// line, in order.
    kept: Vec<(usize, usize, usize, usize)>,
}

impl Clipped {
    fn new(text: &str, focus: usize) -> Clipped {
        let mut out = String::with_capacity(text.len().min(1 << 20));
        let mut kept = Vec::new();
        let mut at = 0;
        for line in text.split_inclusive('\n') {
            let end = at + line.len();
            if line.len() <= SHOWN_LINE {
                kept.push((at, at, end, out.len()));
                out.push_str(line);
            } else {
                // A window of SHOWN_LINE bytes around the focus (or the line's start), moved to
                // character boundaries, with "…" where text was cut.
                let centre = if (at..end).contains(&focus) {
                    focus - at
                } else {
                    0
                };
                let mut from = centre.saturating_sub(SHOWN_LINE / 2);
                let mut to = (from + SHOWN_LINE).min(line.len());
                from = to.saturating_sub(SHOWN_LINE).min(from);
                while !line.is_char_boundary(from) {
                    from -= 1;
                }
                while !line.is_char_boundary(to) {
                    to += 1;
                }
                if from > 0 {
                    out.push('…');
                }
                kept.push((at, at + from, at + to, out.len()));
                out.push_str(&line[from..to]);
                if to < line.len() {
                    out.push('…');
                    if line.ends_with('\n') {
                        out.push('\n');
                    }
                }
            }
            at = end;
        }
        Clipped { text: out, kept }
    }

    /// Where old offset `x` is now; an offset in a cut part goes to the nearest edge of its
    /// line's window.
    fn map(&self, x: usize) -> usize {
        let i = self.kept.partition_point(|&(line, _, _, _)| line <= x);
        match i.checked_sub(1).map(|k| self.kept[k]) {
            Some((_, start, end, new)) => new + x.clamp(start, end) - start,
            None => 0,
        }
    }
}
