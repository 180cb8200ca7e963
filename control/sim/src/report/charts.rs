//! Line charts as inline SVG, drawn with `plotters`' SVG backend (no fonts or files needed: text
//! becomes SVG `<text>`).

use plotters::prelude::*;

use super::ReportError;

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

/// One line of a chart.
pub(super) struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Draws `series` over a shared time axis; the y axis starts at 0 (or `y_max` caps it).
pub(super) fn lines(
    title: &str,
    y_desc: &str,
    series: &[Series],
    y_max: Option<f64>,
) -> Result<String, ReportError> {
    let err = |e: &dyn std::fmt::Debug| ReportError::Chart {
        chart: title.to_string(),
        reason: format!("{e:?}"),
    };
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let x0 = pts().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x1 = pts().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let (x0, x1) = if x0.is_finite() && x1 > x0 {
        (x0, x1)
    } else {
        (0.0, 1.0)
    };
    let top = y_max.unwrap_or_else(|| {
        pts()
            .map(|p| p.1)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            * 1.1
    });
    let top = if top > 0.0 { top } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 330)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(38)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, 0.0..top)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc(y_desc)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, s) in series.iter().enumerate() {
            let (r, g, b) = PALETTE[i % PALETTE.len()];
            let color = RGBColor(r, g, b);
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| err(&e))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_legend() {
        let s = vec![
            Series {
                name: "even".into(),
                points: vec![(0.0, 1.0), (5.0, 3.0)],
            },
            Series {
                name: "p2c".into(),
                points: vec![(0.0, 2.0), (5.0, 1.0)],
            },
        ];
        let svg = lines("p95", "ms", &s, None).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("even") && svg.contains("polyline"),
            "{svg}"
        );
        // Empty input still draws axes.
        assert!(lines("empty", "ms", &[], None).unwrap().contains("<svg"));
    }
}
