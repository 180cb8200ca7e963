//! Time charts as inline SVG, drawn with `plotters`' SVG backend (no fonts or files needed: text
//! becomes SVG `<text>`). The plot takes the left of the picture and its legend a strip to the
//! right, so the legend never covers a line; the scenario's events are dashed vertical lines
//! numbered at the top and captioned under the plot; reference levels (SLAs) are dashed
//! horizontal lines named in the legend. Latency axes are fitted to the data ([`YAxis::Fit`]):
//! from 0 a difference of 10 % between policies is a hair's breadth.
//!
//! plotters writes `font-size` as the size it is given over 1.24, so the sizes here are set for
//! what the browser draws: 14.5 px axis descriptions, 12.9 px tick labels, 13.7 px legend and
//! captions, 17.7 px titles.

use plotters::{
    element::DashedPathElement,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{Event, ReportError};

/// Matplotlib's tab10: distinguishable, and dark enough on white.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

const WIDTH: u32 = 1080;
/// Width of the plot; the legend gets the rest.
const PLOT_W: u32 = 800;
const PLOT_H: u32 = 380;
/// Height of one caption line under the plot, and of one legend line.
const LINE_H: i32 = 21;
/// Event captions under one chart; more are left to the page's list of events.
const MAX_CAPTIONS: usize = 6;
/// Characters per legend line (about 7.5 px each at the legend's size).
const LEGEND_CHARS: usize = 30;

const TITLE: f64 = 22.0;
const AXIS_DESC: f64 = 18.0;
const TICKS: f64 = 16.0;
const TEXT: f64 = 17.0;
const FONT: &str = "sans-serif";

/// Left edge of the plotting area: margin plus the y label area.
const PLOT_LEFT: i32 = 10 + 78;

/// One line of a chart.
pub(super) struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A horizontal reference line (an SLA), dashed and named in the legend.
pub(super) struct Level {
    pub name: String,
    pub y: f64,
}

/// How the y axis is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum YAxis {
    /// From 0 to the largest value plus 10 % (counts).
    FromZero,
    /// From the smallest to the largest value with a margin (latency), taking in the levels
    /// no further than the data's own span from it.
    Fit,
    /// From 0 to this (shares on one scale across charts).
    UpTo(f64),
}

/// One time chart.
pub(super) struct Chart<'a> {
    pub title: &'a str,
    pub y_desc: &'a str,
    pub series: &'a [Series],
    pub y: YAxis,
    pub levels: &'a [Level],
    /// The report's events, all of them: numbered by their place in this list on every chart.
    pub events: &'a [Event],
}

/// Relative margin above and below fitted data.
const FIT_MARGIN: f64 = 0.08;

/// The y range of a chart of `values` with reference `levels`.
pub(super) fn y_range(axis: YAxis, values: &[f64], levels: &[f64]) -> (f64, f64) {
    let finite = || values.iter().copied().filter(|v| v.is_finite());
    let lo = finite().fold(f64::INFINITY, f64::min);
    let hi = finite().fold(f64::NEG_INFINITY, f64::max);
    match axis {
        YAxis::UpTo(top) => (0.0, if top > 0.0 { top } else { 1.0 }),
        YAxis::FromZero => {
            let top = hi.max(0.0) * 1.1;
            (0.0, if top > 0.0 { top } else { 1.0 })
        }
        YAxis::Fit if !lo.is_finite() => (0.0, 1.0),
        YAxis::Fit => {
            let span = hi - lo;
            let reach = if span > 0.0 {
                span
            } else {
                (hi.abs() * 0.1).max(1.0)
            };
            let (mut a, mut b) = (lo, hi);
            for &l in levels {
                if l.is_finite() && l >= lo - reach && l <= hi + reach {
                    a = a.min(l);
                    b = b.max(l);
                }
            }
            let span = if b > a { b - a } else { reach };
            let (mut a, b) = (a - FIT_MARGIN * span, b + FIT_MARGIN * span);
            // Latency is never negative: the axis stops at 0 rather than below it.
            if lo >= 0.0 && a < 0.0 {
                a = 0.0;
            }
            (a, b)
        }
    }
}

/// Tick labels with as many decimals as the range needs (about eight ticks over `span`).
fn tick(span: f64) -> impl Fn(&f64) -> String {
    let decimals = match span {
        s if s >= 8.0 => 0,
        s if s >= 0.8 => 1,
        s if s >= 0.08 => 2,
        _ => 3,
    };
    move |v: &f64| format!("{v:.decimals$}")
}

/// Words of `text` in lines of at most `width` characters (a longer word gets its own line).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ') {
        match lines.last_mut() {
            Some(l) if l.chars().count() + 1 + word.chars().count() <= width => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// The captions drawn under the plot: the events inside `[x0, x1]` with their numbers.
fn captions(events: &[Event], x0: f64, x1: f64) -> Vec<String> {
    let shown: Vec<(usize, &Event)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.t_s > x0 && e.t_s < x1)
        .map(|(i, e)| (i + 1, e))
        .collect();
    let mut out: Vec<String> = shown
        .iter()
        .map(|(n, e)| format!("({n}) {}", e.caption()))
        .collect();
    if out.len() > MAX_CAPTIONS {
        let more = out.len() - (MAX_CAPTIONS - 1);
        out.truncate(MAX_CAPTIONS - 1);
        out.push(format!(
            "... and {more} more: see the list of events at the top"
        ));
    }
    out
}

/// Draws `c` as an SVG document.
pub(super) fn draw(c: &Chart<'_>) -> Result<String, ReportError> {
    let err = |e: &dyn std::fmt::Debug| ReportError::Chart {
        chart: c.title.to_string(),
        reason: format!("{e:?}"),
    };
    let pts = || c.series.iter().flat_map(|s| s.points.iter());
    let x1 = pts().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let (x0, x1) = if x1.is_finite() && x1 > 0.0 {
        (0.0, x1)
    } else {
        (0.0, 1.0)
    };
    let values: Vec<f64> = pts().map(|p| p.1).collect();
    let level_ys: Vec<f64> = c.levels.iter().map(|l| l.y).collect();
    let (y0, y1) = y_range(c.y, &values, &level_ys);
    let captions = captions(c.events, x0, x1);
    let height =
        PLOT_H + (LINE_H as u32) * captions.len() as u32 + if captions.is_empty() { 0 } else { 10 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (upper, lower) = root.split_vertically(PLOT_H);
        let (plot, legend) = upper.split_horizontally(PLOT_W);
        let mut chart = ChartBuilder::on(&plot)
            .caption(c.title, (FONT, TITLE))
            .margin(10)
            .x_label_area_size(52)
            .y_label_area_size(PLOT_LEFT - 10)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(&e))?;
        let y_ticks = tick(y1 - y0);
        chart
            .configure_mesh()
            .x_desc("time since the start of the run (s)")
            .y_desc(c.y_desc)
            .axis_desc_style((FONT, AXIS_DESC))
            .label_style((FONT, TICKS))
            .x_labels(12)
            .y_labels(8)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&y_ticks)
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.1))
            .draw()
            .map_err(|e| err(&e))?;
        let grey = RGBColor(90, 90, 90);
        // Events first, so the data is drawn over them; events at one instant share a line.
        let mut at: Vec<(f64, Vec<usize>)> = Vec::new();
        for (i, e) in c.events.iter().enumerate() {
            if e.t_s <= x0 || e.t_s >= x1 {
                continue;
            }
            match at.last_mut() {
                Some((t, ns)) if *t == e.t_s => ns.push(i + 1),
                _ => at.push((e.t_s, vec![i + 1])),
            }
        }
        for (t, ns) in &at {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(*t, y0), (*t, y1)],
                    6,
                    4,
                    grey.stroke_width(2),
                ))
                .map_err(|e| err(&e))?;
            let label: Vec<String> = ns.iter().map(|n| format!("({n})")).collect();
            let (px, py) = chart.backend_coord(&(*t, y1));
            root.draw(&Text::new(
                label.join(" "),
                (px + 4, py + 3),
                TextStyle::from((FONT, TEXT).into_font()).color(&grey),
            ))
            .map_err(|e| err(&e))?;
        }
        // Several levels look alike: each is named at its right end, above the line.
        let on_line = TextStyle::from((FONT, TEXT).into_font())
            .pos(Pos::new(HPos::Right, VPos::Bottom))
            .color(&BLACK);
        for l in c.levels {
            if l.y >= y0 && l.y <= y1 {
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![(x0, l.y), (x1, l.y)],
                        10,
                        5,
                        BLACK.stroke_width(2),
                    ))
                    .map_err(|e| err(&e))?;
                if c.levels.len() > 1 {
                    let (px, py) = chart.backend_coord(&(x1, l.y));
                    let short: String = l.name.split(':').next().unwrap_or("").into();
                    root.draw(&Text::new(short, (px - 4, py - 3), on_line.clone()))
                        .map_err(|e| err(&e))?;
                }
            }
        }
        for (i, s) in c.series.iter().enumerate() {
            let (r, g, b) = PALETTE[i % PALETTE.len()];
            let color = RGBColor(r, g, b);
            let finite: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|p| p.1.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(
                    finite.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| err(&e))?;
            // A line needs two points; a lone one is drawn as a dot.
            if let [p] = finite[..] {
                chart
                    .draw_series(std::iter::once(Circle::new(p, 4, color.filled())))
                    .map_err(|e| err(&e))?;
            }
        }
        // The legend, in its own strip: one entry per series, then the levels.
        let text =
            TextStyle::from((FONT, TEXT).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        let mut y = 44;
        for (i, s) in c.series.iter().enumerate() {
            let (r, g, b) = PALETTE[i % PALETTE.len()];
            // A line drawn over by a later, identical one would be missing without a word.
            let name = match c.series[i + 1..].iter().rfind(|o| o.points == s.points) {
                Some(o) if !s.points.is_empty() => format!("{} (hidden under {})", s.name, o.name),
                _ => s.name.clone(),
            };
            legend
                .draw(&PathElement::new(
                    vec![(10, y), (36, y)],
                    RGBColor(r, g, b).stroke_width(3),
                ))
                .map_err(|e| err(&e))?;
            for line in wrap(&name, LEGEND_CHARS) {
                legend
                    .draw(&Text::new(line, (44, y), text.clone()))
                    .map_err(|e| err(&e))?;
                y += LINE_H;
            }
            y += 4;
        }
        for l in c.levels {
            legend
                .draw(&DashedPathElement::new(
                    vec![(10, y), (36, y)],
                    7,
                    4,
                    BLACK.stroke_width(2),
                ))
                .map_err(|e| err(&e))?;
            let name = if l.y > y1 {
                format!("{} (above this chart)", l.name)
            } else if l.y < y0 {
                format!("{} (below this chart)", l.name)
            } else {
                l.name.clone()
            };
            for line in wrap(&name, LEGEND_CHARS) {
                legend
                    .draw(&Text::new(line, (44, y), text.clone()))
                    .map_err(|e| err(&e))?;
                y += LINE_H;
            }
            y += 4;
        }
        for (k, line) in captions.iter().enumerate() {
            lower
                .draw(&Text::new(
                    line.as_str(),
                    (PLOT_LEFT, 4 + LINE_H / 2 + k as i32 * LINE_H),
                    text.clone().color(&grey),
                ))
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Vec<Series> {
        vec![
            Series {
                name: "even".into(),
                points: vec![(5.0, 40.0), (10.0, 60.0)],
            },
            Series {
                name: "p2c".into(),
                points: vec![(5.0, 45.0), (10.0, 50.0)],
            },
        ]
    }

    fn chart<'a>(series: &'a [Series], levels: &'a [Level], events: &'a [Event]) -> Chart<'a> {
        Chart {
            title: "p95",
            y_desc: "ms",
            series,
            y: YAxis::Fit,
            levels,
            events,
        }
    }

    #[test]
    fn draws_an_svg_with_the_legend_beside_the_plot() {
        let s = two();
        let svg = draw(&chart(&s, &[], &[])).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains(">\neven\n<") && svg.contains("polyline"),
            "{svg}"
        );
        // The legend's text starts right of the plot.
        let x_of = |name: &str| -> i32 {
            // plotters writes each text on a line of its own.
            let at = svg.find(&format!(">\n{name}\n<")).unwrap();
            let tag = &svg[svg[..at].rfind("<text").unwrap()..at];
            let x = tag.split("x=\"").nth(1).unwrap();
            x[..x.find('"').unwrap()].parse().unwrap()
        };
        assert!(
            x_of("even") > PLOT_W as i32 && x_of("p2c") > PLOT_W as i32,
            "{svg}"
        );
        // A line drawn over by an identical one says so.
        let same = [
            Series {
                name: "a".into(),
                points: vec![(5.0, 60.0), (10.0, 60.0)],
            },
            Series {
                name: "b".into(),
                points: vec![(5.0, 60.0), (10.0, 60.0)],
            },
        ];
        let svg = draw(&chart(&same, &[], &[])).unwrap();
        assert!(svg.contains("a (hidden under b)"), "{svg}");
        let lone = [Series {
            name: "x".into(),
            points: vec![(5.0, 60.0)],
        }];
        assert!(draw(&chart(&lone, &[], &[])).unwrap().contains("<circle"));
        // Empty input still draws axes.
        assert!(draw(&chart(&[], &[], &[])).unwrap().contains("<svg"));
    }

    #[test]
    fn fonts_are_readable() {
        let s = two();
        let svg = draw(&chart(&s, &[], &[])).unwrap();
        let sizes: Vec<f64> = svg
            .split("font-size=\"")
            .skip(1)
            .map(|x| x[..x.find('"').unwrap()].parse().unwrap())
            .collect();
        assert!(!sizes.is_empty());
        assert!(sizes.iter().all(|&px| px >= 12.0), "{sizes:?}");
        // The axis descriptions.
        let at = svg.find("time since the start").unwrap();
        let tag = &svg[svg[..at].rfind("<text").unwrap()..at];
        let px: f64 = tag
            .split("font-size=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(px >= 13.0, "{tag}");
    }

    #[test]
    fn latency_is_fitted_to_the_data_not_to_zero() {
        let (lo, hi) = y_range(YAxis::Fit, &[40.0, 55.0, 60.0], &[]);
        assert!(
            lo > 30.0 && lo < 40.0 && hi > 60.0 && hi < 70.0,
            "{lo}..{hi}"
        );
        // An SLA near the data is taken in; one far above it is not.
        let (_, hi) = y_range(YAxis::Fit, &[40.0, 60.0], &[75.0]);
        assert!(hi > 75.0);
        let (_, hi) = y_range(YAxis::Fit, &[40.0, 60.0], &[150.0]);
        assert!(hi < 70.0);
        // Flat data still gets a range; never below 0 for non-negative data.
        let (lo, hi) = y_range(YAxis::Fit, &[50.0, 50.0], &[]);
        assert!(lo < 50.0 && hi > 50.0);
        assert!(y_range(YAxis::Fit, &[0.5, 30.0], &[]).0 >= 0.0);
        assert_eq!(y_range(YAxis::FromZero, &[40.0, 60.0], &[]).0, 0.0);
        assert_eq!(y_range(YAxis::UpTo(0.5), &[0.2], &[]), (0.0, 0.5));
    }

    #[test]
    fn events_and_levels_are_drawn_and_captioned() {
        let s = two();
        let levels = [Level {
            name: "SLA f: p95 ≤ 55 ms".into(),
            y: 55.0,
        }];
        let events = [
            Event {
                t_s: 7.0,
                label: "interference on h3 (cpu 0.1 → 0.6)".into(),
            },
            Event {
                t_s: 99.0,
                label: "after the run".into(),
            },
        ];
        let svg = draw(&chart(&s, &levels, &events)).unwrap();
        assert!(
            svg.contains("(1) t=7 s: interference on h3 (cpu 0.1 → 0.6)"),
            "{svg}"
        );
        assert!(svg.contains(">\n(1)\n<"), "{svg}");
        assert!(!svg.contains("after the run"));
        assert!(svg.contains("SLA f: p95 ≤ 55 ms"));
        // With several levels each is named on its line too.
        let two = [
            Level {
                name: "SLA a: p95 ≤ 45 ms".into(),
                y: 45.0,
            },
            Level {
                name: "SLA b: p95 ≤ 55 ms".into(),
                y: 55.0,
            },
        ];
        let svg = draw(&chart(&s, &two, &[])).unwrap();
        assert!(
            svg.contains("\nSLA a\n") && svg.contains("\nSLA b\n"),
            "{svg}"
        );
        let far = [Level {
            name: "SLA".into(),
            y: 500.0,
        }];
        assert!(
            draw(&chart(&s, &far, &[]))
                .unwrap()
                .contains("SLA (above this chart)")
        );
        assert_eq!(wrap("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
    }
}
