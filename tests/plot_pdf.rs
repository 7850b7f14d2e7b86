//! `plot ... to "x.pdf"`: a one-page PDF that parses, carries its labels as text in the
//! bundled font, and is the same byte for byte on every run of the same script and seed.

mod common;

use common::{scratch, write};

const SCRIPT: &str = r#"let curve = sweep n in 0..=8 {
  kl: estimate(9.2 * exp(-1.6 * n), 0.02 * exp(-n), 40),
  bound: 9.3 * exp(-1.55 * n),
}
plot curve.kl, curve.bound to "kl.pdf" with {
  title: "KL along a prompt", x: "prompt length", y: "KL (nats)", log_y: true,
  labels: ["KL", "bound"], styles: ["solid", "dashed"],
}
"#;

fn pdf_of_a_run(out: &str) -> Vec<u8> {
    let dir = scratch("plot-pdf");
    write(&dir.join("plot.beb"), SCRIPT);
    let run = common::beb_in(&dir, &["run", "plot.beb", "--seed", "1", "--out", out]).run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let path = dir.join(out).join("kl.pdf");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

#[test]
fn a_pdf_figure_parses_has_its_text_and_is_reproducible() {
    let first = pdf_of_a_run("one");
    assert!(first.starts_with(b"%PDF-"), "not a PDF");
    let second = pdf_of_a_run("two");
    assert!(first == second, "two runs wrote different PDF files");

    let document = lopdf::Document::load_mem(&first).unwrap_or_else(|e| panic!("parse: {e}"));
    let pages = document.get_pages();
    assert_eq!(pages.len(), 1);
    let text = document
        .extract_text(&pages.keys().copied().collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("extract text: {e}"))
        // svg2pdf places glyph by glyph; lopdf puts a line break between placements.
        .replace('\n', "");
    for label in ["KL along a prompt", "prompt length", "bound"] {
        assert!(
            text.contains(label),
            "{label:?} not in the PDF's text: {text:?}"
        );
    }
    // The text is set in the bundled font, embedded (no system font is needed to show it).
    let fonts: Vec<String> = document
        .objects
        .values()
        .filter_map(|o| o.as_dict().ok())
        .filter_map(|d| d.get(b"BaseFont").ok())
        .filter_map(|n| n.as_name().ok())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    assert!(
        fonts.iter().any(|f| f.contains("DejaVuSans")),
        "fonts: {fonts:?}"
    );
}

#[test]
fn unknown_figure_formats_list_pdf() {
    let dir = scratch("plot-pdf-bad");
    write(&dir.join("plot.beb"), "plot [1, 2] to \"x.eps\"\n");
    let run = common::beb_in(&dir, &["run", "plot.beb", "--seed", "1", "--out", "out"]).run();
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains(".svg, .png or .pdf"), "{}", run.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}
