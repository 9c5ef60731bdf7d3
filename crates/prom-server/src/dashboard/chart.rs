//! Server-rendered SVG charts: pure functions from numbers to markup, so a chart needs no script
//! and no style attribute (the CSP forbids both) and is tested like any other function.
//!
//! Every piece of text in the markup goes through [`escape`]; the dashboard inserts the result
//! into a page unescaped, so nothing from a caller may reach it any other way.

use std::fmt::Write as _;

use prom_core::money::Amount;

/// One day of a usage chart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayBar {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub calls: u64,
    pub charged: Amount,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 330.0;
/// Room on the left for the y axis' labels.
const LEFT: f64 = 84.0;
const RIGHT: f64 = 12.0;
const PANEL_HEIGHT: f64 = 100.0;
/// Where the plots of the two panels (calls, spend) start.
const CALLS_TOP: f64 = 34.0;
const SPEND_TOP: f64 = 190.0;
const INK: &str = "#1b2233";
const MUTED: &str = "#556070";
const LINE: &str = "#b8c0cc";
const CALLS_FILL: &str = "#1f2a44";
const SPEND_FILL: &str = "#c2410c";

/// `n` with a thin comma every three digits: `1234567` → `1,234,567`.
pub fn thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Text made safe for an XML attribute or element.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// The usage chart: calls per day above, spend per day below, one bar per day in `days` (in
/// order; days without usage should be present with zeros so the time axis is even). Each bar
/// carries a `<title>` with its figures; the whole chart an `aria-label` summing them up.
pub fn usage_chart(id: &str, days: &[DayBar]) -> String {
    let calls: u64 = days.iter().map(|d| d.calls).fold(0, u64::saturating_add);
    let spend: u128 = days.iter().map(|d| d.charged.units()).fold(0, u128::saturating_add);
    let range = match (days.first(), days.last()) {
        (Some(first), Some(last)) if first.day != last.day => format!("from {} to {}", first.day, last.day),
        (Some(only), _) => format!("on {}", only.day),
        _ => "in no days".to_owned(),
    };
    let summary = format!(
        "Calls and spend per day {range}: {} calls, {} charged in total",
        thousands(u128::from(calls)),
        thousands(spend)
    );
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="{}" class="chart" role="img" aria-label="{}" viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="12">"#,
        escape(id),
        escape(&summary),
    );
    let _ = write!(svg, "<title>{}</title>", escape(&summary));
    let call_values: Vec<u128> = days.iter().map(|d| u128::from(d.calls)).collect();
    let spend_values: Vec<u128> = days.iter().map(|d| d.charged.units()).collect();
    panel(&mut svg, days, &call_values, CALLS_TOP, "Calls per day", "calls", CALLS_FILL);
    panel(&mut svg, days, &spend_values, SPEND_TOP, "Spend per day", "charged", SPEND_FILL);
    day_axis(&mut svg, days);
    if calls == 0 && spend == 0 {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" fill="{MUTED}">No calls in this range</text>"#,
            LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
            CALLS_TOP + PANEL_HEIGHT / 2.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One panel: its heading, y axis (0 and the largest value) and a bar per day.
fn panel(svg: &mut String, days: &[DayBar], values: &[u128], top: f64, heading: &str, unit: &str, fill: &str) {
    let bottom = top + PANEL_HEIGHT;
    let plot_width = WIDTH - LEFT - RIGHT;
    let max = values.iter().copied().max().unwrap_or(0);
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="{}" fill="{INK}" font-weight="600" font-size="13">{}</text>"#,
        top - 12.0,
        escape(heading)
    );
    // The y axis' labels, right-aligned against the plot.
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end" fill="{MUTED}">{}</text>"#,
        LEFT - 6.0,
        top + 4.0,
        escape(&thousands(max))
    );
    let _ = write!(svg, r#"<text x="{}" y="{bottom}" text-anchor="end" fill="{MUTED}">0</text>"#, LEFT - 6.0);
    let _ = write!(
        svg,
        r#"<line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{bottom}" stroke="{LINE}" stroke-width="1"/><line x1="{LEFT}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="{LINE}" stroke-width="1"/>"#,
        WIDTH - RIGHT
    );
    if days.is_empty() || max == 0 {
        return;
    }
    let slot = plot_width / days.len() as f64;
    let bar_width = (slot * 0.8).max(1.0);
    let _ = write!(svg, r#"<g fill="{fill}">"#);
    for (i, (day, value)) in days.iter().zip(values).enumerate() {
        let height = (*value as f64 / max as f64) * PANEL_HEIGHT;
        let x = LEFT + slot * i as f64 + (slot - bar_width) / 2.0;
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="{bar_width:.1}" height="{height:.1}"><title>{}: {} {}</title></rect>"#,
            bottom - height,
            escape(&day.day),
            escape(&thousands(*value)),
            escape(unit),
        );
    }
    svg.push_str("</g>");
}

/// The dates under the lower panel: the first, the last and (for longer ranges) the middle day.
fn day_axis(svg: &mut String, days: &[DayBar]) {
    let Some(last_index) = days.len().checked_sub(1) else { return };
    let plot_width = WIDTH - LEFT - RIGHT;
    let slot = plot_width / days.len() as f64;
    let y = SPEND_TOP + PANEL_HEIGHT + 18.0;
    let mut marks = vec![(0, "start")];
    if last_index >= 4 {
        marks.push((last_index / 2, "middle"));
    }
    if last_index > 0 {
        marks.push((last_index, "end"));
    }
    for (index, anchor) in marks {
        let centre = LEFT + slot * index as f64 + slot / 2.0;
        let x = match anchor {
            "start" => (centre - slot / 2.0).max(LEFT),
            "end" => (centre + slot / 2.0).min(WIDTH - RIGHT),
            _ => centre,
        };
        let day = days.get(index).map_or("", |d| d.day.as_str());
        let _ = write!(svg, r#"<text x="{x:.1}" y="{y}" text-anchor="{anchor}" fill="{MUTED}">{}</text>"#, escape(day));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(day: &str, calls: u64, charged: u128) -> DayBar {
        DayBar { day: day.to_owned(), calls, charged: Amount::new(charged) }
    }

    #[test]
    fn thousands_groups_digits_in_threes() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(u128::MAX), "340,282,366,920,938,463,463,374,607,431,768,211,455");
    }

    #[test]
    fn the_chart_has_a_bar_per_day_and_panel_scaled_to_the_busiest_day() {
        let days = [day("2026-03-01", 2, 0), day("2026-03-02", 0, 0), day("2026-03-03", 4, 1_500)];
        let svg = usage_chart("usage-chart", &days);
        assert!(svg.starts_with(r#"<svg id="usage-chart" class="chart" role="img" aria-label="Calls and spend per day from 2026-03-01 to 2026-03-03: 6 calls, 1,500 charged in total""#), "{svg}");
        assert!(svg.contains("<title>Calls and spend per day from 2026-03-01 to 2026-03-03"), "{svg}");
        assert!(svg.ends_with("</svg>"));
        // Two panels of three bars each; the busiest day fills its panel, an empty day has no height.
        assert_eq!(svg.matches("<rect ").count(), 6, "{svg}");
        assert!(svg.contains(r#"height="100.0"><title>2026-03-03: 4 calls</title>"#), "{svg}");
        assert!(svg.contains(r#"height="50.0"><title>2026-03-01: 2 calls</title>"#), "{svg}");
        assert!(svg.contains(r#"height="0.0"><title>2026-03-01: 0 charged</title>"#), "{svg}");
        assert!(svg.contains(r#"height="100.0"><title>2026-03-03: 1,500 charged</title>"#), "{svg}");
        // Axis labels: the largest value of each panel, and the first and last day.
        assert!(svg.contains(">4</text>") && svg.contains(">1,500</text>"), "{svg}");
        assert!(svg.contains(">2026-03-01</text>") && svg.contains(">2026-03-03</text>"), "{svg}");
        assert!(!svg.contains("style"), "presentation attributes only: {svg}");
        assert!(!svg.contains("No calls"), "{svg}");
    }

    #[test]
    fn an_empty_range_says_so_without_bars() {
        let svg = usage_chart("c", &[day("2026-03-01", 0, 0), day("2026-03-02", 0, 0)]);
        assert!(svg.contains("No calls in this range"), "{svg}");
        assert_eq!(svg.matches("<rect ").count(), 0, "{svg}");
        let none = usage_chart("c", &[]);
        assert!(none.contains("in no days") && none.ends_with("</svg>"), "{none}");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        let svg = usage_chart("a\"b", &[day("<script>", 1, 1)]);
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"), "{svg}");
        assert!(svg.contains(r#"id="a&quot;b""#), "{svg}");
    }
}
