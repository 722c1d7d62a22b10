//! A small log–log line chart as SVG: the scaling runs against history length.

use std::fmt::Write;

pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
    /// A cross at the last point: where the series broke.
    pub ends_in_failure: bool,
}

pub struct Chart {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 110.0;

/// Charts side by side under a caption (machine, command, date).
pub fn svg(charts: &[Chart], caption: &[String]) -> String {
    let height = HEIGHT + 20.0 * caption.len() as f64;
    let width = WIDTH * charts.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (i, chart) in charts.iter().enumerate() {
        let _ = writeln!(out, "<g transform=\"translate({},0)\">", WIDTH * i as f64);
        chart.draw(&mut out);
        out.push_str("</g>\n");
    }
    for (i, line) in caption.iter().enumerate() {
        let y = HEIGHT + 14.0 + 20.0 * i as f64;
        let _ = writeln!(out, "<text x=\"10\" y=\"{y}\" fill=\"#444\">{}</text>", escape(line));
    }
    out.push_str("</svg>\n");
    out
}

/// Powers of ten covering `values` (at least one decade).
fn decades(values: impl Iterator<Item = f64>) -> (i32, i32) {
    let (low, high) = values
        .filter(|value| *value > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| (low.min(value), high.max(value)));
    if !low.is_finite() {
        return (0, 1);
    }
    let (low, high) = (low.log10().floor() as i32, high.log10().ceil() as i32);
    (low, high.max(low + 1))
}

impl Chart {
    fn draw(&self, out: &mut String) {
        let points = || self.series.iter().flat_map(|series| series.points.iter());
        let (x_low, x_high) = decades(points().map(|point| point.0));
        let (y_low, y_high) = decades(points().map(|point| point.1));
        let (plot_width, plot_height) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let x = |value: f64| {
            LEFT + (value.max(f64::MIN_POSITIVE).log10() - f64::from(x_low)) / f64::from(x_high - x_low) * plot_width
        };
        let y = |value: f64| {
            TOP + plot_height
                - (value.max(f64::MIN_POSITIVE).log10() - f64::from(y_low)) / f64::from(y_high - y_low) * plot_height
        };
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">{}</text>",
            WIDTH / 2.0,
            escape(&self.title)
        );
        for power in x_low..=x_high {
            let at = x(10f64.powi(power));
            let _ = writeln!(
                out,
                "<line x1=\"{at:.1}\" y1=\"{TOP}\" x2=\"{at:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                TOP + plot_height,
                TOP + plot_height + 16.0,
                label(power)
            );
        }
        for power in y_low..=y_high {
            let at = y(10f64.powi(power));
            let _ = writeln!(
                out,
                "<line x1=\"{LEFT}\" y1=\"{at:.1}\" x2=\"{:.1}\" y2=\"{at:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT + plot_width,
                LEFT - 6.0,
                at + 4.0,
                label(power)
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">messages already in the session (log)</text>\
             <text transform=\"translate(16,{:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            LEFT + plot_width / 2.0,
            TOP + plot_height + 34.0,
            TOP + plot_height / 2.0,
            escape(&self.y_label)
        );
        for (i, series) in self.series.iter().enumerate() {
            let path: Vec<String> =
                series.points.iter().map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py))).collect();
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
                series.color,
                path.join(" ")
            );
            if series.points.len() <= 12 {
                for &(px, py) in &series.points {
                    let _ = writeln!(
                        out,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{}\"/>",
                        x(px),
                        y(py),
                        series.color
                    );
                }
            }
            if let (true, Some(&(px, py))) = (series.ends_in_failure, series.points.last()) {
                let (cx, cy) = (x(px), y(py));
                let _ = writeln!(
                    out,
                    "<path d=\"M{} {} L{} {} M{} {} L{} {}\" stroke=\"#c00\" stroke-width=\"3\"/>",
                    cx - 6.0,
                    cy - 6.0,
                    cx + 6.0,
                    cy + 6.0,
                    cx - 6.0,
                    cy + 6.0,
                    cx + 6.0,
                    cy - 6.0
                );
            }
            let legend_y = TOP + plot_height + 54.0 + 16.0 * i as f64;
            let _ = writeln!(
                out,
                "<rect x=\"{LEFT}\" y=\"{:.1}\" width=\"14\" height=\"4\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{legend_y:.1}\">{}</text>",
                legend_y - 5.0,
                series.color,
                LEFT + 20.0,
                escape(&series.name)
            );
        }
    }
}

fn label(power: i32) -> String {
    match power {
        0.. => format!("{}", 10u64.pow(power.unsigned_abs())),
        _ => format!("{}", 10f64.powi(power)),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decades_cover_the_values() {
        assert_eq!(decades([10.0, 100_000.0].into_iter()), (1, 5));
        assert_eq!(decades([3.2, 4.1].into_iter()), (0, 1));
        assert_eq!(decades([0.4, 250.0].into_iter()), (-1, 3));
    }

    #[test]
    fn the_chart_names_its_series_and_marks_a_failure() {
        let chart = Chart {
            title: "Append".into(),
            y_label: "ms".into(),
            series: vec![Series {
                name: "A <b>".into(),
                color: "#123456",
                points: vec![(10.0, 1.0), (1000.0, 100.0)],
                ends_in_failure: true,
            }],
        };
        let svg = svg(&[chart], &["measured today".into()]);
        assert!(svg.contains("A &lt;b&gt;"));
        assert!(svg.contains("stroke=\"#c00\""));
        assert!(svg.contains("measured today"));
    }
}
