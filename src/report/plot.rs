//! Figures for `plot ... to "file.svg"` (or `.png`, `.pdf`), drawn with plotters in the style of a
//! paper's figures: white background, thin axes, a faint grid, readable type, distinct colours
//! and markers per series, a boxed legend, and 95% error bars on Monte Carlo estimates.
//!
//! Text is rendered from DejaVu Sans, bundled in the binary (`assets/fonts/`, Bitstream Vera
//! licence), so PNG and PDF files come out the same on a bare machine with no system fonts.

use std::sync::Once;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters_backend::{BackendCoord, DrawingErrorKind};

/// DejaVu Sans (Bitstream Vera licence; see `assets/fonts/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// Colour-blind-safe colours (Okabe and Ito), in the order series get them.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(230, 159, 0),   // orange
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 0, 0),       // black
];

/// One point of a series; `err` is the half-width of its error bar (none for exact values).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub err: Option<f64>,
}

/// How a series' points are joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    Solid,
    Dashed,
    Dotted,
    /// Markers only.
    Hidden,
}

impl Line {
    pub const NAMES: [&'static str; 4] = ["solid", "dashed", "dotted", "none"];

    pub fn parse(name: &str) -> Option<Line> {
        Some(match name {
            "solid" => Line::Solid,
            "dashed" => Line::Dashed,
            "dotted" => Line::Dotted,
            "none" => Line::Hidden,
            _ => return None,
        })
    }

    /// The drawn stretches of a line `length` long, as (start, end) offsets.
    fn dashes(self, length: i32, unit: i32) -> Vec<(i32, i32)> {
        let (on, off) = match self {
            Line::Solid => return vec![(0, length)],
            Line::Dashed => (3 * unit, 2 * unit),
            Line::Dotted => (unit, unit),
            Line::Hidden => return Vec::new(),
        };
        let mut out = Vec::new();
        let mut at = 0;
        while at < length {
            out.push((at, (at + on).min(length)));
            at += on + off;
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<Point>,
    pub line: Line,
    pub markers: bool,
}

impl Series {
    /// A solid line with markers.
    pub fn new(label: impl Into<String>, points: Vec<Point>) -> Series {
        Series {
            label: label.into(),
            points,
            line: Line::Solid,
            markers: true,
        }
    }
}

/// Where the legend goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Legend {
    /// The corner with the fewest points.
    Auto,
    UpperRight,
    UpperLeft,
    LowerRight,
    LowerLeft,
    Hidden,
}

impl Legend {
    pub const NAMES: [&'static str; 6] = [
        "auto",
        "upper right",
        "upper left",
        "lower right",
        "lower left",
        "none",
    ];

    pub fn parse(name: &str) -> Option<Legend> {
        Some(match name {
            "auto" => Legend::Auto,
            "upper right" => Legend::UpperRight,
            "upper left" => Legend::UpperLeft,
            "lower right" => Legend::LowerRight,
            "lower left" => Legend::LowerLeft,
            "none" => Legend::Hidden,
            _ => return None,
        })
    }
}

/// A figure: its series and how to draw them.
#[derive(Clone, Debug)]
pub struct Figure {
    pub series: Vec<Series>,
    pub title: Option<String>,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    /// Size in points (SVG pixels); PNG files are drawn at twice this resolution.
    pub width: u32,
    pub height: u32,
    pub legend: Legend,
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
}

impl Default for Figure {
    fn default() -> Self {
        Figure {
            series: Vec::new(),
            title: None,
            x_label: String::new(),
            y_label: String::new(),
            log_x: false,
            log_y: false,
            width: 640,
            height: 400,
            legend: Legend::Auto,
            x_range: None,
            y_range: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
    /// The SVG drawing converted by svg2pdf: vector graphics, text as text in the bundled font.
    Pdf,
}

impl Format {
    pub fn from_extension(ext: &str) -> Option<Format> {
        match ext.to_ascii_lowercase().as_str() {
            "svg" => Some(Format::Svg),
            "png" => Some(Format::Png),
            "pdf" => Some(Format::Pdf),
            _ => None,
        }
    }
}

/// What drawing produced besides the file: points left out, for a warning.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    /// Points not drawn because a log axis cannot show them (values <= 0) or they are infinite.
    pub dropped: usize,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled font is a valid TrueType file (checked by the tests); if it were not,
        // text would fail to draw and `render` would report that as an error.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// Draw `figure` as an SVG document or a PNG image.
pub fn render(figure: &Figure, format: Format) -> Result<Rendered, String> {
    register_font();
    let (figure, dropped) = drawable(figure);
    if figure.series.iter().all(|s| s.points.is_empty()) {
        return Err("there is nothing to draw: every series is empty".into());
    }
    let x = axis_range(&figure, true)?;
    let y = legend_headroom(&figure, x, axis_range(&figure, false)?);
    let svg = || -> Result<String, String> {
        let mut text = String::new();
        {
            let backend = SVGBackend::with_string(&mut text, (figure.width, figure.height));
            draw_with(backend.into_drawing_area(), &figure, x, y, 1.0)?;
        }
        Ok(text)
    };
    let bytes = match format {
        Format::Svg => svg()?.into_bytes(),
        Format::Pdf => svg_to_pdf(&svg()?)?,
        Format::Png => {
            let scale = 2.0;
            let (w, h) = (figure.width * 2, figure.height * 2);
            let mut pixels = vec![255u8; (w as usize) * (h as usize) * 3];
            {
                let backend = BitMapBackend::<plotters::backend::RGBPixel>::with_buffer_and_format(
                    &mut pixels,
                    (w, h),
                )
                .map_err(|e| e.to_string())?;
                draw_with(
                    TypesetBackend(backend).into_drawing_area(),
                    &figure,
                    x,
                    y,
                    scale,
                )?;
            }
            encode_png(&pixels, w, h)?
        }
    };
    Ok(Rendered { bytes, dropped })
}

/// An SVG document as a one-page PDF. Text is shaped from the bundled font only (no system
/// fonts, so every machine writes the same bytes) and embedded as text; svg2pdf writes no
/// creation date or document ID.
fn svg_to_pdf(svg: &str) -> Result<Vec<u8>, String> {
    use svg2pdf::usvg;
    let mut fonts = usvg::fontdb::Database::new();
    fonts.load_font_data(FONT.to_vec());
    // plotters writes the generic family it was given (`sans-serif`): make every generic
    // family, and the default, the bundled font.
    const BUNDLED: &str = "DejaVu Sans";
    fonts.set_sans_serif_family(BUNDLED);
    fonts.set_serif_family(BUNDLED);
    fonts.set_monospace_family(BUNDLED);
    let options = usvg::Options {
        font_family: BUNDLED.to_string(),
        fontdb: std::sync::Arc::new(fonts),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(svg, &options)
        .map_err(|e| format!("cannot read the drawing back for PDF: {e}"))?;
    svg2pdf::to_pdf(
        &tree,
        svg2pdf::ConversionOptions::default(),
        svg2pdf::PageOptions::default(),
    )
    .map(stable_pdf)
    .map_err(|e| format!("cannot write the PDF: {e}"))
}

/// svg2pdf lists a page's resources (`/xo3 14 0 R`, one per line) in a hash map's order,
/// which changes from run to run. Sorting each run of such lines (the entries of one
/// dictionary, outside streams) gives the same file for the same figure; the bytes are only
/// reordered, so the cross-reference offsets stay right.
fn stable_pdf(bytes: Vec<u8>) -> Vec<u8> {
    fn is_entry(line: &[u8]) -> bool {
        let text = match std::str::from_utf8(line) {
            Ok(t) => t.trim_start_matches(' '),
            Err(_) => return false,
        };
        let mut parts = text.split(' ');
        matches!(
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()),
            (Some(name), Some(object), Some(generation), Some("R"), None)
                if name.starts_with('/')
                    && !object.is_empty()
                    && object.bytes().all(|b| b.is_ascii_digit())
                    && !generation.is_empty()
                    && generation.bytes().all(|b| b.is_ascii_digit())
        )
    }
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let mut out: Vec<&[u8]> = Vec::with_capacity(lines.len());
    let mut group: Vec<&[u8]> = Vec::new();
    let mut in_stream = false;
    for line in lines {
        if !in_stream && is_entry(line) {
            group.push(line);
            continue;
        }
        group.sort();
        out.append(&mut group);
        if line == b"stream" {
            in_stream = true;
        } else if line == b"endstream" {
            in_stream = false;
        }
        out.push(line);
    }
    group.sort();
    out.append(&mut group);
    out.join(&b'\n')
}

fn encode_png(pixels: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        writer.write_image_data(pixels).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The figure with only the points its axes can show, and how many were left out.
fn drawable(figure: &Figure) -> (Figure, usize) {
    let mut out = figure.clone();
    let mut dropped = 0;
    for s in &mut out.series {
        let before = s.points.len();
        s.points.retain(|p| {
            p.x.is_finite()
                && p.y.is_finite()
                && (!figure.log_x || p.x > 0.0)
                && (!figure.log_y || p.y > 0.0)
        });
        dropped += before - s.points.len();
    }
    (out, dropped)
}

/// The most decades a log axis may span and the narrowest linear range relative to its
/// values: past them no tick can be placed or told apart.
const MAX_DECADES: f64 = 200.0;
const MIN_RELATIVE_SPAN: f64 = 1e-12;

/// The range of one axis, checked to be drawable.
fn axis_range(figure: &Figure, is_x: bool) -> Result<(f64, f64), String> {
    let (lo, hi) = padded_range(figure, is_x)?;
    let name = if is_x { "x" } else { "y" };
    let log = if is_x { figure.log_x } else { figure.log_y };
    let (limit, flag) = if is_x {
        ("xlim", "log_x")
    } else {
        ("ylim", "log_y")
    };
    if log {
        let decades = hi.log10() - lo.log10();
        if !decades.is_finite() || decades > MAX_DECADES {
            return Err(format!(
                "the {name} axis would span {decades:.0} decades ([{lo:e}, {hi:e}]), more than the {MAX_DECADES} a log axis can show; set `{limit}` or drop `{flag}`"
            ));
        }
    } else if !(hi - lo).is_finite() {
        return Err(format!(
            "the {name} axis would span [{lo:e}, {hi:e}], wider than a number can hold; set `{limit}`"
        ));
    } else if hi - lo < MIN_RELATIVE_SPAN * lo.abs().max(hi.abs()) {
        return Err(format!(
            "the {name} range [{lo}, {hi}] is too narrow to place ticks in; set a wider `{limit}`"
        ));
    }
    Ok((lo, hi))
}

/// The data range of one axis (with error bars), padded, or the range the script gave.
fn padded_range(figure: &Figure, is_x: bool) -> Result<(f64, f64), String> {
    let (given, log) = if is_x {
        (figure.x_range, figure.log_x)
    } else {
        (figure.y_range, figure.log_y)
    };
    if let Some((lo, hi)) = given {
        if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) || (log && lo <= 0.0) {
            return Err(format!(
                "the {} range [{lo}, {hi}] is empty{}",
                if is_x { "x" } else { "y" },
                if log { " or not positive" } else { "" }
            ));
        }
        return Ok((lo, hi));
    }
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for p in figure.series.iter().flat_map(|s| &s.points) {
        let (v, e) = if is_x { (p.x, None) } else { (p.y, p.err) };
        let e = e.filter(|e| e.is_finite()).unwrap_or(0.0);
        let low = if log && v - e <= 0.0 { v } else { v - e };
        lo = lo.min(low);
        hi = hi.max(v + e);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return Err("there is nothing to draw".into());
    }
    Ok(if log {
        let (a, b) = (lo.log10(), hi.log10());
        let pad = ((b - a) * 0.05).max(0.05);
        (
            10f64.powf(a - pad).max(f64::MIN_POSITIVE),
            10f64.powf(b + pad).min(f64::MAX),
        )
    } else if lo == hi {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    } else {
        // Half the gap each, so a range as wide as two doubles allow still pads finitely.
        let pad = (hi * 0.5 - lo * 0.5) * 0.1;
        // Keep a zero baseline when the data start at zero.
        let start = if lo >= 0.0 && lo - pad < 0.0 && is_x {
            lo
        } else {
            lo - pad
        };
        (start, hi + pad)
    })
}

fn draw_with<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    figure: &Figure,
    x: (f64, f64),
    y: (f64, f64),
    scale: f64,
) -> Result<(), String> {
    let (xr, yr) = (x.0..x.1, y.0..y.1);
    match (figure.log_x, figure.log_y) {
        (false, false) => draw(root, figure, xr, yr, scale),
        (true, false) => draw(root, figure, xr.log_scale(), yr, scale),
        (false, true) => draw(root, figure, xr, yr.log_scale(), scale),
        (true, true) => draw(root, figure, xr.log_scale(), yr.log_scale(), scale),
    }
}

fn superscript(n: i32) -> String {
    n.to_string()
        .chars()
        .map(|c| match c {
            '-' => '⁻',
            '0' => '⁰',
            '1' => '¹',
            '2' => '²',
            '3' => '³',
            '4' => '⁴',
            '5' => '⁵',
            '6' => '⁶',
            '7' => '⁷',
            '8' => '⁸',
            _ => '⁹',
        })
        .collect()
}

/// A tick label: powers of ten as 10ⁿ on a log axis spanning decades (other ticks unlabelled),
/// otherwise the number to four significant digits, with a true minus sign (U+2212). A tick
/// within floating noise of zero (a billionth of the axis `span`) is 0, not -5.551e-17.
fn tick(v: f64, log: bool, decades: bool, span: f64) -> String {
    if log && decades {
        let e = v.log10().round();
        if (v / 10f64.powf(e) - 1.0).abs() < 1e-9 {
            return match e as i32 {
                0 => "1".into(),
                1 => "10".into(),
                k => format!("10{}", superscript(k)),
            };
        }
        return String::new();
    }
    if !log && v.abs() <= span.abs() * 1e-9 {
        return "0".into();
    }
    let text = crate::format::significant(v, 4);
    if text == "-0" {
        "0".into()
    } else {
        text.replace('-', "\u{2212}")
    }
}

/// The outline of series `i`'s marker around (0, 0), `r` pixels in radius: a circle, a
/// square, a triangle, a diamond, a downward triangle.
fn marker_shape(i: usize, r: i32) -> Vec<(i32, i32)> {
    let r = f64::from(r);
    let polygon = |corners: usize, radius: f64, turn: f64| -> Vec<(i32, i32)> {
        (0..corners)
            .map(|k| {
                let a = turn + std::f64::consts::TAU * k as f64 / corners as f64;
                (
                    (radius * a.cos()).round() as i32,
                    (radius * a.sin()).round() as i32,
                )
            })
            .collect()
    };
    use std::f64::consts::{FRAC_PI_2, FRAC_PI_4};
    match i % 5 {
        0 => polygon(20, r, 0.0),
        1 => polygon(4, r * 1.25, FRAC_PI_4),
        2 => polygon(3, r * 1.45, -FRAC_PI_2),
        3 => polygon(4, r * 1.4, 0.0),
        _ => polygon(3, r * 1.45, FRAC_PI_2),
    }
}

/// The legend box's share of the plotting area's width and height (approximate, from the
/// labels' widths at the legend's font size).
fn legend_box(figure: &Figure) -> (f64, f64) {
    let widest = figure
        .series
        .iter()
        .map(|s| f64::from(measure(&s.label, 12.5).0))
        .fold(0.0, f64::max);
    let plot_w = (f64::from(figure.width) - 100.0).max(1.0);
    let plot_h = (f64::from(figure.height) - 90.0).max(1.0);
    let rows = figure.series.len() as f64;
    (
        ((widest + 60.0) / plot_w).min(1.0),
        ((rows * 19.0 + 26.0) / plot_h).min(1.0),
    )
}

/// Whether a legend is drawn by `draw`.
fn shows_legend(figure: &Figure) -> bool {
    figure.legend != Legend::Hidden && (figure.series.len() > 1 || figure.legend != Legend::Auto)
}

/// How many points (with their error bars) fall under a legend box in each corner, in the
/// order upper right, upper left, lower right, lower left.
fn corner_counts(figure: &Figure, x: (f64, f64), y: (f64, f64)) -> [usize; 4] {
    let norm = |v: f64, (lo, hi): (f64, f64), log: bool| {
        if log {
            (v.log10() - lo.log10()) / (hi.log10() - lo.log10())
        } else {
            (v - lo) / (hi - lo)
        }
    };
    let (w, h) = legend_box(figure);
    let mut counts = [0; 4];
    for (k, (right, upper)) in [(true, true), (false, true), (true, false), (false, false)]
        .into_iter()
        .enumerate()
    {
        counts[k] = figure
            .series
            .iter()
            .flat_map(|s| &s.points)
            .filter(|p| {
                let u = norm(p.x, x, figure.log_x);
                let e = p.err.filter(|e| e.is_finite()).unwrap_or(0.0);
                let low = if figure.log_y && p.y - e <= 0.0 {
                    p.y
                } else {
                    p.y - e
                };
                let (v_lo, v_hi) = (norm(low, y, figure.log_y), norm(p.y + e, y, figure.log_y));
                let in_x = if right { u >= 1.0 - w } else { u <= w };
                let in_y = if upper { v_hi >= 1.0 - h } else { v_lo <= h };
                in_x && in_y
            })
            .count();
    }
    counts
}

/// The y range with room above the data for the legend when every corner holds data, so the
/// legend never covers points or error bars.
fn legend_headroom(figure: &Figure, x: (f64, f64), y: (f64, f64)) -> (f64, f64) {
    if figure.legend != Legend::Auto
        || !shows_legend(figure)
        || figure.y_range.is_some()
        || corner_counts(figure, x, y).contains(&0)
    {
        return y;
    }
    let (_, h) = legend_box(figure);
    let keep = (1.0 - h).max(0.3);
    let roomy = if figure.log_y {
        let (a, b) = (y.0.log10(), y.1.log10());
        (y.0, 10f64.powf(a + (b - a) / keep))
    } else {
        (y.0, y.0 + (y.1 - y.0) / keep)
    };
    // No room to add at the edge of the doubles (or of a log axis's decades).
    let decades = roomy.1.log10() - roomy.0.log10();
    if (roomy.1 - roomy.0).is_finite() && (!figure.log_y || decades <= MAX_DECADES) {
        roomy
    } else {
        y
    }
}

/// The corner whose legend box covers the fewest points (with their error bars).
fn auto_legend(figure: &Figure, x: (f64, f64), y: (f64, f64)) -> SeriesLabelPosition {
    let counts = corner_counts(figure, x, y);
    let corners = [
        SeriesLabelPosition::UpperRight,
        SeriesLabelPosition::UpperLeft,
        SeriesLabelPosition::LowerRight,
        SeriesLabelPosition::LowerLeft,
    ];
    let best = (0..4).min_by_key(|&k| counts[k]).unwrap_or(0);
    corners[best].clone()
}

fn draw<DB, X, Y>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    figure: &Figure,
    x: X,
    y: Y,
    scale: f64,
) -> Result<(), String>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let px = |v: f64| (v * scale).round() as i32;
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let font = |size: f64| (FAMILY, size * scale).into_font();
    let mut builder = ChartBuilder::on(&root);
    builder
        .margin_top(px(if figure.title.is_some() { 8.0 } else { 16.0 }))
        .margin_right(px(20.0))
        .margin_left(px(8.0))
        .margin_bottom(px(8.0))
        .x_label_area_size(px(if figure.x_label.is_empty() {
            28.0
        } else {
            46.0
        }))
        .y_label_area_size(px(if figure.y_label.is_empty() {
            52.0
        } else {
            70.0
        }));
    if let Some(title) = &figure.title {
        builder.caption(title, font(17.0));
    }
    let mut chart = builder.build_cartesian_2d(x, y).map_err(err)?;
    let x_span = chart.x_range();
    let y_span = chart.y_range();
    let x_decades = figure.log_x && x_span.end / x_span.start >= 10.0;
    let y_decades = figure.log_y && y_span.end / y_span.start >= 10.0;
    let (x_width, y_width) = (x_span.end - x_span.start, y_span.end - y_span.start);
    let x_fmt = |v: &f64| tick(*v, figure.log_x, x_decades, x_width);
    let y_fmt = |v: &f64| tick(*v, figure.log_y, y_decades, y_width);
    chart
        .configure_mesh()
        .bold_line_style(RGBColor(0, 0, 0).mix(0.07).stroke_width(1))
        .light_line_style(TRANSPARENT)
        .axis_style(BLACK.stroke_width(1))
        .set_all_tick_mark_size(px(4.0))
        .label_style(font(12.5))
        .axis_desc_style(font(14.0))
        .x_desc(figure.x_label.as_str())
        .y_desc(figure.y_label.as_str())
        .x_labels(8)
        .y_labels(if figure.log_y { 12 } else { 7 })
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .draw()
        .map_err(err)?;
    // A thin frame around the plotting area, as journals draw it.
    {
        let area = chart.plotting_area().strip_coord_spec();
        let (w, h) = area.dim_in_pixel();
        area.draw(&Rectangle::new(
            [(0, 0), (w as i32 - 1, h as i32 - 1)],
            BLACK.stroke_width(1),
        ))
        .map_err(err)?;
    }
    let y_floor = y_span.start;
    let marker = px(3.2);
    for (i, series) in figure.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let line = color.stroke_width(px(1.6) as u32);
        let thin = color.stroke_width(px(1.0) as u32);
        let points: Vec<(f64, f64)> = series.points.iter().map(|p| (p.x, p.y)).collect();
        if points.len() > 1 {
            match series.line {
                Line::Solid => chart
                    .draw_series(LineSeries::new(points.iter().copied(), line))
                    .map(|_| ()),
                Line::Dashed | Line::Dotted => {
                    let (on, off) = if series.line == Line::Dashed {
                        (px(6.0), px(4.0))
                    } else {
                        (px(1.8), px(2.6))
                    };
                    chart
                        .draw_series(DashedLineSeries::new(points.iter().copied(), on, off, line))
                        .map(|_| ())
                }
                Line::Hidden => Ok(()),
            }
            .map_err(err)?;
        }
        // 95% error bars with small caps.
        let bars: Vec<(f64, f64, f64)> = series
            .points
            .iter()
            .filter_map(|p| {
                let e = p.err.filter(|e| *e > 0.0 && e.is_finite())?;
                let lo = p.y - e;
                let lo = if figure.log_y && lo <= 0.0 {
                    y_floor
                } else {
                    lo
                };
                Some((p.x, lo, p.y + e))
            })
            .collect();
        chart
            .draw_series(
                bars.iter()
                    .map(|&(x, lo, hi)| PathElement::new(vec![(x, lo), (x, hi)], thin)),
            )
            .map_err(err)?;
        let cap = px(3.0);
        for &(x, lo, hi) in &bars {
            for end in [lo, hi] {
                chart
                    .draw_series(std::iter::once(
                        EmptyElement::at((x, end))
                            + PathElement::new(vec![(-cap, 0), (cap, 0)], thin),
                    ))
                    .map_err(err)?;
            }
        }
        let shape = marker_shape(i, marker);
        if series.markers {
            let fill = color.filled();
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&p| EmptyElement::at(p) + Polygon::new(shape.clone(), fill)),
                )
                .map_err(err)?;
        }
        // The legend entry: a short line (as drawn) with the series' marker.
        let marker_style: ShapeStyle = if series.markers {
            color.filled()
        } else {
            TRANSPARENT.into()
        };
        let half = px(11.0);
        let glyph: Vec<(i32, i32)> = shape.iter().map(|&(x, y)| (x + half, y)).collect();
        // Four stretches at most (a fixed element type); unused ones are transparent.
        let mut stretches: Vec<((i32, i32), ShapeStyle)> = series
            .line
            .dashes(2 * half, px(2.5).max(1))
            .into_iter()
            .take(4)
            .map(|d| (d, line))
            .collect();
        stretches.resize(4, ((0, 0), TRANSPARENT.into()));
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(err)?
            .label(series.label.as_str())
            .legend(move |(lx, ly)| {
                let segment = |k: usize| {
                    let ((a, b), style) = stretches[k];
                    PathElement::new(vec![(a, 0), (b, 0)], style)
                };
                EmptyElement::at((lx, ly))
                    + segment(0)
                    + segment(1)
                    + segment(2)
                    + segment(3)
                    + Polygon::new(glyph.clone(), marker_style)
            });
    }
    if shows_legend(figure) {
        let position = match figure.legend {
            Legend::UpperRight => SeriesLabelPosition::UpperRight,
            Legend::UpperLeft => SeriesLabelPosition::UpperLeft,
            Legend::LowerRight => SeriesLabelPosition::LowerRight,
            Legend::LowerLeft => SeriesLabelPosition::LowerLeft,
            _ => auto_legend(
                figure,
                (x_span.start, x_span.end),
                (y_span.start, y_span.end),
            ),
        };
        chart
            .configure_series_labels()
            .position(position)
            .margin(px(10.0))
            .legend_area_size(px(30.0))
            .background_style(WHITE.mix(0.92))
            .border_style(BLACK.mix(0.5))
            .label_font(font(12.5))
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// A bitmap backend whose text is set with ab_glyph directly: each glyph placed on the
/// baseline at its advance, including its side bearings and kerning (plotters' own bitmap
/// text drops the bearings, which shifts letters such as the `t` of "prompt").
struct TypesetBackend<B>(B);

fn font() -> Option<&'static ab_glyph::FontRef<'static>> {
    static PARSED: std::sync::OnceLock<Option<ab_glyph::FontRef<'static>>> =
        std::sync::OnceLock::new();
    PARSED
        .get_or_init(|| ab_glyph::FontRef::try_from_slice(FONT).ok())
        .as_ref()
}

/// The advance width of `text` and the line's ascent and descent, in pixels.
fn measure(text: &str, size: f64) -> (f32, f32, f32) {
    use ab_glyph::{Font, ScaleFont};
    let Some(f) = font() else {
        return (0.0, 0.0, 0.0);
    };
    let scaled = f.as_scaled(size as f32);
    let mut width = 0.0;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            width += scaled.kern(p, id);
        }
        width += scaled.h_advance(id);
        previous = Some(id);
    }
    (width, scaled.ascent(), scaled.descent())
}

impl<B: DrawingBackend> DrawingBackend for TypesetBackend<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: plotters_backend::BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_pixel(point, color)
    }

    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_path(path, style)
    }

    fn draw_circle<S: plotters_backend::BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        (iw, ih): (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.blit_bitmap(pos, (iw, ih), src)
    }

    fn estimate_text_size<S: plotters_backend::BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        let (width, ascent, descent) = measure(text, style.size());
        Ok((width.ceil() as u32, (ascent - descent).ceil() as u32))
    }

    fn draw_text<S: plotters_backend::BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        use ab_glyph::{Font, ScaleFont, point};
        use plotters_backend::text_anchor::{HPos, VPos};
        let color = style.color();
        let Some(f) = font() else {
            return Ok(());
        };
        if color.alpha == 0.0 {
            return Ok(());
        }
        let size = style.size();
        let (width, ascent, descent) = measure(text, size);
        let height = ascent - descent;
        let dx = match style.anchor().h_pos {
            HPos::Left => 0.0,
            HPos::Right => -width,
            HPos::Center => -width / 2.0,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0.0,
            VPos::Center => -height / 2.0,
            VPos::Bottom => -height,
        };
        let transform = style.transform();
        let (w, h) = self.get_size();
        let scaled = f.as_scaled(size as f32);
        let mut caret = 0.0f32;
        let mut previous = None;
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = previous {
                caret += scaled.kern(p, id);
            }
            previous = Some(id);
            let glyph = id.with_scale_and_position(size as f32, point(caret + dx, ascent + dy));
            caret += scaled.h_advance(id);
            let Some(outline) = f.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outline.px_bounds();
            let mut pixels = Vec::new();
            outline.draw(|gx, gy, coverage| {
                pixels.push((
                    bounds.min.x as i32 + gx as i32,
                    bounds.min.y as i32 + gy as i32,
                    coverage,
                ))
            });
            for (x, y, coverage) in pixels {
                if coverage <= 0.0 {
                    continue;
                }
                let (x, y) = transform.transform(x, y);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
                    let mut shade = color;
                    shade.alpha *= f64::from(coverage.min(1.0));
                    self.0.draw_pixel((x, y), shade)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure() -> Figure {
        Figure {
            series: vec![
                Series::new(
                    "kl",
                    (0..10)
                        .map(|i| Point {
                            x: i as f64,
                            y: (-(i as f64)).exp(),
                            err: Some(0.01),
                        })
                        .collect(),
                ),
                Series {
                    line: Line::Dashed,
                    markers: false,
                    ..Series::new(
                        "bound",
                        (0..10)
                            .map(|i| Point {
                                x: i as f64,
                                y: 1.2 * (-(i as f64)).exp(),
                                err: None,
                            })
                            .collect(),
                    )
                },
            ],
            title: Some("KL divergence".into()),
            x_label: "prompt length (sentences)".into(),
            y_label: "KL (nats)".into(),
            ..Figure::default()
        }
    }

    /// Two series filling every corner of the plot, with wide error bars, on a y axis that
    /// crosses zero.
    fn crowded() -> Figure {
        let zigzag = |sign: f64| {
            (0..21)
                .map(|i| Point {
                    x: i as f64,
                    y: if i % 2 == 0 { 0.3 * sign } else { -0.3 * sign },
                    err: Some(0.05),
                })
                .collect()
        };
        Figure {
            series: vec![
                Series::new("first", zigzag(1.0)),
                Series::new("second", zigzag(-1.0)),
            ],
            ..Figure::default()
        }
    }

    #[test]
    fn the_legend_gets_room_above_data_that_fill_every_corner() {
        let f = crowded();
        let x = axis_range(&f, true).unwrap();
        let y = axis_range(&f, false).unwrap();
        assert!(!corner_counts(&f, x, y).contains(&0), "the case is crowded");
        let roomy = legend_headroom(&f, x, y);
        assert!(roomy.1 > y.1 && roomy.0 == y.0, "{y:?} -> {roomy:?}");
        let counts = corner_counts(&f, x, roomy);
        assert_eq!(
            counts[0].min(counts[1]),
            0,
            "an upper corner is free: {counts:?}"
        );
        // A figure with a free corner keeps its range.
        let g = figure();
        let (gx, gy) = (
            axis_range(&g, true).unwrap(),
            axis_range(&g, false).unwrap(),
        );
        assert_eq!(legend_headroom(&g, gx, gy), gy);
    }

    #[test]
    fn svg_ticks_have_true_minus_signs_and_no_floating_noise() {
        let svg = String::from_utf8(render(&crowded(), Format::Svg).unwrap().bytes).unwrap();
        assert!(svg.contains("\n\u{2212}0."), "a negative tick with U+2212");
        assert!(!svg.contains("e-1"), "no floating noise such as -5.551e-17");
        assert!(!svg.contains("\n-0."), "no hyphen-minus in tick labels");
    }

    #[test]
    fn svg_has_labels_and_series() {
        let out =
            render(&figure(), Format::Svg).map(|r| String::from_utf8_lossy(&r.bytes).into_owned());
        let svg = out.unwrap_or_else(|e| panic!("{e}"));
        for text in [
            "KL divergence",
            "prompt length (sentences)",
            "KL (nats)",
            "bound",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
    }

    #[test]
    fn png_renders_text_from_the_bundled_font() {
        let mut fig = figure();
        fig.log_y = true;
        let out = render(&fig, Format::Png).unwrap_or_else(|e| panic!("{e}"));
        assert!(out.bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(out.dropped, 0);
    }

    #[test]
    fn log_axes_drop_points_they_cannot_show() {
        let mut fig = figure();
        fig.log_y = true;
        fig.series[1].points[0].y = 0.0;
        let out = render(&fig, Format::Svg).map(|r| r.dropped);
        assert_eq!(out, Ok(1));
    }

    #[test]
    fn ticks_read_like_a_paper() {
        assert_eq!(tick(1e-4, true, true, 1.0), "10⁻⁴");
        assert_eq!(tick(100.0, true, true, 1.0), "10²");
        assert_eq!(tick(3e-4, true, true, 1.0), "");
        assert_eq!(tick(0.25, false, false, 1.0), "0.25");
        assert_eq!(tick(-0.0, false, false, 1.0), "0");
        // Floating noise around zero is zero; negative ticks have a true minus sign.
        assert_eq!(tick(-5.551115123125783e-17, false, false, 0.5), "0");
        assert_eq!(tick(-0.1, false, false, 0.5), "\u{2212}0.1");
        assert_eq!(tick(-0.1, false, false, 0.5).chars().next(), Some('−'));
    }

    #[test]
    fn dashes_cover_the_legend_line() {
        assert_eq!(Line::Solid.dashes(20, 2), [(0, 20)]);
        assert_eq!(Line::Dashed.dashes(20, 2), [(0, 6), (10, 16)]);
        assert!(Line::Hidden.dashes(20, 2).is_empty());
    }

    #[test]
    fn pdf_resource_lists_are_sorted_in_place() {
        let pdf = b"<<\n  /XObject <<\n    /xo1 10 0 R\n    /xo0 8 0 R\n  >>\nstream\n /b 1 0 R\n /a 1 0 R\nendstream\n".to_vec();
        let stable = stable_pdf(pdf.clone());
        assert_eq!(stable.len(), pdf.len());
        assert_eq!(
            String::from_utf8_lossy(&stable),
            "<<\n  /XObject <<\n    /xo0 8 0 R\n    /xo1 10 0 R\n  >>\nstream\n /b 1 0 R\n /a 1 0 R\nendstream\n"
        );
        let figure = render(&figure(), Format::Pdf)
            .map(|r| r.bytes)
            .unwrap_or_default();
        assert!(figure.starts_with(b"%PDF-"));
        // Each render fills svg2pdf's hash maps afresh, in another order.
        let again = render(&super::tests::figure(), Format::Pdf).map(|r| r.bytes);
        assert_eq!(Ok(figure), again);
    }

    #[test]
    fn the_font_is_a_valid_truetype_file() {
        assert!(FONT.len() > 100_000);
        assert!(FONT.starts_with(&[0, 1, 0, 0]));
    }
}
