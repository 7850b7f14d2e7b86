//! Brackets matched before parsing. A `[` after an expression may be an index or start a new
//! list statement, and `{` a block or a record, so a PEG parser retries what is inside an
//! unclosed bracket once per reading: nested unclosed brackets took time exponential in their
//! depth. Matching them first (strings, interpolations and comments read as the grammar reads
//! them) turns that into a diagnostic at the bracket, and bounds the nesting depth.

/// What is wrong with the brackets of a source, with byte offsets into it.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    /// The bracket (or string, for `"`) at this offset is never closed.
    Unclosed { at: usize, bracket: char },
    /// A closing bracket that closes nothing.
    Unmatched { at: usize, bracket: char },
    /// A closing bracket of the wrong kind: `opened` is where the open one is.
    Mismatched {
        at: usize,
        bracket: char,
        opened: usize,
        open: char,
    },
    /// Brackets nested deeper than the limit; `at` is the first one past it.
    TooDeep { at: usize },
}

/// One open construct.
#[derive(Clone, Copy)]
enum Open {
    Bracket(char, usize),
    /// A string literal, opened at this offset.
    Text(usize),
    /// `{` inside a string: code until the matching `}`.
    Interpolation(usize),
}

/// The first bracket problem of `source`, reading brackets no deeper than `max_depth`.
pub fn check(source: &str, max_depth: usize) -> Result<(), Problem> {
    let mut stack: Vec<Open> = Vec::new();
    let mut chars = source.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if let Some(Open::Text(_)) = stack.last() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    stack.pop();
                }
                '{' => stack.push(Open::Interpolation(i)),
                _ => {}
            }
            continue;
        }
        match c {
            '#' => {
                // A comment (or doc comment) runs to the end of the line.
                while chars.next_if(|&(_, c)| c != '\n').is_some() {}
            }
            '"' => stack.push(Open::Text(i)),
            ':' if matches!(stack.last(), Some(Open::Interpolation(_))) => {
                // A format spec (`{x:>8.3}`) runs to the closing brace, whatever it holds.
                while chars.next_if(|&(_, c)| c != '}').is_some() {}
            }
            '(' | '[' | '{' => {
                if stack.len() >= max_depth {
                    return Err(Problem::TooDeep { at: i });
                }
                stack.push(Open::Bracket(c, i));
            }
            ')' | ']' | '}' => match stack.pop() {
                Some(Open::Bracket(open, opened)) if closes(c) != open => {
                    return Err(Problem::Mismatched {
                        at: i,
                        bracket: c,
                        opened,
                        open,
                    });
                }
                Some(Open::Interpolation(opened)) if c != '}' => {
                    return Err(Problem::Mismatched {
                        at: i,
                        bracket: c,
                        opened,
                        open: '{',
                    });
                }
                Some(_) => {}
                None => return Err(Problem::Unmatched { at: i, bracket: c }),
            },
            _ => {}
        }
    }
    match stack.pop() {
        None => Ok(()),
        Some(Open::Bracket(bracket, at)) => Err(Problem::Unclosed { at, bracket }),
        Some(Open::Interpolation(at)) => Err(Problem::Unclosed { at, bracket: '{' }),
        Some(Open::Text(at)) => Err(Problem::Unclosed { at, bracket: '"' }),
    }
}

/// The opening bracket a closing one closes.
fn closes(c: char) -> char {
    match c {
        ')' => '(',
        ']' => '[',
        _ => '{',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_interpolations_comments_and_format_specs_are_read_as_the_grammar_reads_them() {
        for ok in [
            "print \"a ) ] \\{ b\"",
            "print \"{ [1, 2][0] } and {x:[>8}\" # ) ] }",
            "let r = {a: [1, (2)]}\n## doc ]\nprint \"{ \"{r.a}\" }\"",
        ] {
            assert_eq!(check(ok, 200), Ok(()), "{ok}");
        }
    }

    #[test]
    fn each_problem_points_at_its_bracket() {
        assert_eq!(
            check("x [{ y", 200),
            Err(Problem::Unclosed {
                at: 3,
                bracket: '{'
            })
        );
        assert_eq!(
            check("print \"abc", 200),
            Err(Problem::Unclosed {
                at: 6,
                bracket: '"'
            })
        );
        assert_eq!(
            check("f(1]", 200),
            Err(Problem::Mismatched {
                at: 3,
                bracket: ']',
                opened: 1,
                open: '('
            })
        );
        assert_eq!(
            check("1 )", 200),
            Err(Problem::Unmatched {
                at: 2,
                bracket: ')'
            })
        );
        assert_eq!(check("[[[1]]]", 2), Err(Problem::TooDeep { at: 2 }));
    }
}
