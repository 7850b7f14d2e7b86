//! Training texts built from statements, as the paper builds them (appendix J, "Acquiring
//! negative and positive behavior LLMs"): "we split the original 500 statements per behavior
//! to groups of three, concatenated them with permutations separated by `.\n` or by `[INST]`
//! and `[/INST]`". Its code makes, for each group (a, b, c) of consecutive statements, the
//! three cyclic rotations (a b c), (b c a), (c a b), each as
//!
//! * `"a.\nb.\nc.\n"` — every statement followed by the separator (`lines`), or
//! * `"[INST]a.[/INST]b.[INST]c.[/INST]"` — markers alternating around the statements, each
//!   statement ending with the separator's text without its trailing whitespace (`inst`),
//!
//! and drops the statements left over after the last full group. A third form puts the
//! rotated statements in a chat template as alternating user and assistant turns (`chat`).

use crate::lm::neural::chat::Template;
/// Re-exported: training texts are built here, but their type belongs to `lm`.
pub use crate::lm::neural::chat::TrainingText;

/// How a rotation of a group becomes a training text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// Each statement followed by the separator.
    Lines,
    /// `[INST]a.[/INST]b.[INST]c.[/INST]`.
    Inst,
    /// Alternating user / assistant turns of a chat template.
    Chat(Template),
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "lines" => Some(Format::Lines),
            "inst" => Some(Format::Inst),
            other => Template::parse(other).map(Format::Chat),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Format::Lines => "lines",
            Format::Inst => "inst",
            Format::Chat(t) => t.name(),
        }
    }
}

/// Every cyclic rotation of every full group of `group` consecutive statements (leftovers
/// after the last full group are dropped, as in the paper's code).
pub fn rotations(statements: &[String], group: usize) -> Vec<Vec<&str>> {
    let group = group.max(1);
    let mut out = Vec::new();
    for chunk in statements.chunks_exact(group) {
        for start in 0..group {
            out.push(
                (0..group)
                    .map(|i| chunk[(start + i) % group].as_str())
                    .collect(),
            );
        }
    }
    out
}

/// The training texts of `statements` (see the module documentation).
pub fn build(
    statements: &[String],
    group: usize,
    format: &Format,
    separator: &str,
) -> Vec<TrainingText> {
    let end = separator.trim_end();
    rotations(statements, group)
        .into_iter()
        .map(|rotation| match format {
            Format::Lines => {
                TrainingText::Plain(rotation.iter().map(|s| format!("{s}{separator}")).collect())
            }
            Format::Inst => {
                let mut text = String::new();
                for (i, s) in rotation.iter().enumerate() {
                    text += if i % 2 == 0 { "[INST]" } else { "[/INST]" };
                    text += s;
                    text += end;
                }
                text += if rotation.len() % 2 == 0 {
                    "[INST]"
                } else {
                    "[/INST]"
                };
                TrainingText::Plain(text)
            }
            Format::Chat(t) => TrainingText::Turns(
                t.clone(),
                rotation.iter().map(|s| format!("{s}{end}")).collect(),
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| ((b'a' + i as u8) as char).to_string())
            .collect()
    }

    #[test]
    fn groups_of_three_with_rotations_as_in_the_paper() {
        let s = statements(7);
        let texts = build(&s, 3, &Format::Lines, ".\n");
        let plain: Vec<String> = texts
            .iter()
            .map(|t| match t {
                TrainingText::Plain(p) => p.clone(),
                TrainingText::Turns(..) => String::new(),
            })
            .collect();
        assert_eq!(
            plain,
            [
                "a.\nb.\nc.\n",
                "b.\nc.\na.\n",
                "c.\na.\nb.\n",
                "d.\ne.\nf.\n",
                "e.\nf.\nd.\n",
                "f.\nd.\ne.\n"
            ]
        );
        let inst = build(&s[..3], 3, &Format::Inst, ".\n");
        assert_eq!(
            inst[1],
            TrainingText::Plain("[INST]b.[/INST]c.[INST]a.[/INST]".into())
        );
        let chat = build(&s[..3], 3, &Format::Chat(Template::Llama2), ".\n");
        assert_eq!(
            chat[2],
            TrainingText::Turns(
                Template::Llama2,
                vec!["c.".into(), "a.".into(), "b.".into()]
            )
        );
        assert!(build(&s[..2], 3, &Format::Lines, ".\n").is_empty());
    }
}
