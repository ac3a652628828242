//! The HTML report (`--html PATH`): one self-contained page, drawn from the JSON document
//! ([`crate::record::Document`]), that opens in any browser without a network or a script:
//! the verdict and its reasons, the settings, throughput, latency, bots, errors and
//! disconnects over time as SVG charts, the latency distribution, every total, and the JSON
//! document itself (in a `<script type="application/json" id="report-data">` element, so
//! that the file is the whole record of the run).
//!
//! Every text that came from the server or the command line is escaped.

use std::fmt::Write as _;

use serde_json::Value;

/// Points drawn at most per line; longer series are thinned, each point the largest of the
/// seconds it stands for, so that a spike is never thinned away.
const MAX_POINTS: usize = 1200;
const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 190.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 28.0;

/// The page of `document` (a [`crate::record::Document`] as JSON).
pub fn render(document: &Value) -> String {
    let mut page = String::with_capacity(64 * 1024);
    let scenario = text(&document["scenario"]);
    let server = text(&document["settings"]["server"]);
    let passed = document["verdict"] == "passed";
    let _ = writeln!(
        page,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{} report: {} against {}</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        if passed { "PASSED" } else { "FAILED" },
        escape(&scenario),
        escape(&server)
    );
    let _ = writeln!(
        page,
        "<h1>dummy-client report: {} against {}</h1>\n<div class=\"muted\">{}, started {} UTC, schema version {}</div>",
        escape(&scenario),
        escape(&server),
        escape(&text(&document["tool"])),
        utc(document["started_at_unix_ms"].as_u64().unwrap_or(0)),
        document["schema_version"]
    );
    let reasons: Vec<String> = document["reasons"]
        .as_array()
        .map(|r| r.iter().map(text).collect())
        .unwrap_or_default();
    if passed {
        page.push_str("<div id=\"verdict\" class=\"verdict passed\">PASSED</div>\n");
    } else {
        page.push_str("<div id=\"verdict\" class=\"verdict failed\">FAILED<ul id=\"reasons\">");
        for reason in &reasons {
            let _ = write!(page, "<li>{}</li>", escape(reason));
        }
        page.push_str("</ul></div>\n");
    }
    let _ = writeln!(
        page,
        "<div class=\"muted\">Times in {}, rates {}, sizes in {}.</div>",
        escape(&text(&document["units"]["time"])),
        escape(&text(&document["units"]["rate"])),
        escape(&text(&document["units"]["size"]))
    );

    page.push_str("<h2>Settings</h2>\n");
    page.push_str(&table("settings", &document["settings"]));

    let series = document["series"].as_array().cloned().unwrap_or_default();
    let column = |key: &str| -> Vec<f64> {
        series
            .iter()
            .map(|s| s[key].as_f64().unwrap_or(0.0))
            .collect()
    };
    let at: Vec<f64> = column("at_ms").iter().map(|ms| ms / 1000.0).collect();
    // Counts per second of each sample's own span: the last sample of a run is shorter.
    let rate = |key: &str| -> Vec<f64> { per_second(&at, &column(key)) };
    // Latencies of a second in which nothing arrived are not zero but unknown: a gap.
    let received = column("received");
    let latency = |key: &str| -> Vec<f64> {
        column(key)
            .into_iter()
            .zip(&received)
            .map(|(ms, &n)| if n > 0.0 { ms } else { f64::NAN })
            .collect()
    };
    let (sent_what, received_what) = if scenario == "arena" {
        ("moves sent", "updates received")
    } else {
        ("chat lines sent", "deliveries received")
    };
    page.push_str("<h2>Over time</h2>\n<div class=\"charts\">\n");
    page.push_str(&line_chart(
        "chart-throughput-sent",
        &format!("{sent_what} per second"),
        &at,
        &[(sent_what, "#06c", rate("sent"))],
    ));
    page.push_str(&line_chart(
        "chart-throughput-received",
        &format!("{received_what} per second"),
        &at,
        &[(received_what, "#080", rate("received"))],
    ));
    page.push_str(&line_chart(
        "chart-latency",
        "latency of the second, ms",
        &at,
        &[
            ("p50", "#06c", latency("latency_p50_ms")),
            ("p99", "#c60", latency("latency_p99_ms")),
        ],
    ));
    page.push_str(&line_chart(
        "chart-bots",
        "bots in",
        &at,
        &[("bots", "#555", column("bots"))],
    ));
    page.push_str(&line_chart(
        "chart-errors",
        "errors, disconnects and failovers per second",
        &at,
        &[
            ("errors", "#c60", rate("errors")),
            ("disconnects", "#b00", rate("disconnects")),
            ("failovers", "#80c", rate("failovers")),
        ],
    ));
    page.push_str("</div>\n");

    page.push_str("<h2>Latency distribution (whole run)</h2>\n");
    page.push_str(&distribution_chart(&document["latency_distribution"]));

    let results = &document["results"];
    page.push_str("<h2>Errors, disconnects and failovers</h2>\n<div class=\"charts\">\n");
    page.push_str(&counts_table(
        "errors",
        "S2C_Error code",
        &results["errors"],
    ));
    let disconnects = if results["disconnect_reasons"].is_object() {
        &results["disconnect_reasons"]
    } else {
        &results["disconnects"]
    };
    page.push_str(&counts_table(
        "disconnects",
        "disconnect reason",
        disconnects,
    ));
    if results.get("failover_reasons").is_some() {
        page.push_str(&counts_table(
            "failovers",
            "failover: why the connection ended",
            &results["failover_reasons"],
        ));
    }
    if results["drops"].as_object().is_some_and(|d| !d.is_empty()) {
        page.push_str(&counts_table(
            "drops",
            "connection dropped (then resumed)",
            &results["drops"],
        ));
    }
    page.push_str("</div>\n");

    page.push_str("<h2>Totals</h2>\n");
    page.push_str(&table("results", results));

    // The document itself, for tools; `<` is escaped so that no text ends the element.
    let json = serde_json::to_string(document)
        .unwrap_or_default()
        .replace('<', "\\u003c");
    let _ = write!(
        page,
        "<script type=\"application/json\" id=\"report-data\">{json}</script>\n</body>\n</html>\n"
    );
    page
}

const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
.muted { color: #666; }
.verdict { font-size: 1.4em; font-weight: bold; margin: .6em 0; padding: .4em .8em; border-radius: 6px; display: inline-block; }
.verdict ul { font-size: .7em; font-weight: normal; margin: .3em 0 0; }
.passed { background: #e3f4e3; color: #060; }
.failed { background: #fbe4e4; color: #a00; }
.charts { display: flex; gap: 1.2em; flex-wrap: wrap; align-items: flex-start; }
figure { margin: 0; }
figcaption { margin-bottom: .2em; }
svg { background: #fff; border: 1px solid #ddd; border-radius: 6px; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
table { border-collapse: collapse; background: #fff; }
td, th { border: 1px solid #ddd; padding: .2em .6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
";

/// `value` as plain text: strings without quotes, other values as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `s` safe inside HTML text and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number as it reads best: integers whole, others with 3 significant decimals at most.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// A table of the fields of `object`: scalars as they are, objects of scalars on one line.
fn table(id: &str, object: &Value) -> String {
    let mut out = format!("<table id=\"{id}\">\n");
    let Some(fields) = object.as_object() else {
        return out + "</table>\n";
    };
    for (key, value) in fields {
        let cell = match value {
            Value::Null => continue,
            Value::Number(n) => {
                let _ = writeln!(
                    out,
                    "<tr><th>{}</th><td class=\"n\">{}</td></tr>",
                    escape(key),
                    number(n.as_f64().unwrap_or(0.0))
                );
                continue;
            }
            Value::Object(inner) if inner.is_empty() => "none".to_string(),
            Value::Object(inner) => inner
                .iter()
                .map(|(k, v)| match v {
                    Value::Number(n) => format!("{k} {}", number(n.as_f64().unwrap_or(0.0))),
                    other => format!("{k} {}", text(other)),
                })
                .collect::<Vec<_>>()
                .join(", "),
            other => text(other),
        };
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(key),
            escape(&cell)
        );
    }
    out + "</table>\n"
}

/// A table of `counts` (an object of numbers), or "none".
fn counts_table(id: &str, what: &str, counts: &Value) -> String {
    let mut out = format!(
        "<table id=\"{id}\"><tr><th>{}</th><th>count</th></tr>\n",
        escape(what)
    );
    match counts.as_object() {
        Some(counts) if !counts.is_empty() => {
            for (key, n) in counts {
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
                    escape(key),
                    number(n.as_f64().unwrap_or(0.0))
                );
            }
        }
        _ => out.push_str("<tr><td>none</td><td class=\"n\">0</td></tr>\n"),
    }
    out + "</table>\n"
}

/// An axis label: short, `2.5k`, `10M`, `0.5`.
fn short(value: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    let (scaled, suffix) = match value.abs() {
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    trim(format!("{scaled:.2}")) + suffix
}

/// `counts[i]` per second of the span ending at `at[i]` (seconds), which starts at the sample
/// before (or at 0).
fn per_second(at: &[f64], counts: &[f64]) -> Vec<f64> {
    let mut before = 0.0;
    at.iter()
        .zip(counts)
        .map(|(&end, &count)| {
            let span = end - before;
            before = end;
            if span > 0.0 {
                count / span
            } else {
                count
            }
        })
        .collect()
}

/// The spacing, in seconds, of the time axis of a run `max` seconds long: a round step giving
/// at most six labels.
fn time_step(max: f64) -> f64 {
    const STEPS: [f64; 16] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        10800.0, 21600.0,
    ];
    STEPS
        .into_iter()
        .find(|step| max / step <= 5.0)
        .unwrap_or(43200.0)
}

/// `secs` on a time axis with labels `step` apart: `45s`, `10m` or `6h`.
fn time_label(secs: f64, step: f64) -> String {
    if step >= 3600.0 {
        format!("{}h", (secs / 3600.0).round())
    } else if step >= 60.0 {
        format!("{}m", (secs / 60.0).round())
    } else {
        format!("{}s", secs.round())
    }
}

/// A top for an axis from 0 to `max`: 1, 2 or 5 times a power of ten.
fn nice_top(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|top| *top >= max)
        .unwrap_or(10.0 * power)
}

/// `xs` and `ys` thinned to at most [`MAX_POINTS`], each point the largest y of its stretch
/// (NaN where the whole stretch is NaN).
fn thin(xs: &[f64], ys: &[f64]) -> Vec<(f64, f64)> {
    let n = xs.len().min(ys.len());
    let stride = n.div_ceil(MAX_POINTS).max(1);
    (0..n)
        .step_by(stride)
        .map(|start| {
            let end = (start + stride).min(n);
            let y = ys[start..end].iter().copied().fold(f64::NAN, f64::max);
            (xs[end - 1], y)
        })
        .collect()
}

/// A line chart of `lines` (label, colour, values) against `xs` seconds.
fn line_chart(id: &str, title: &str, xs: &[f64], lines: &[(&str, &str, Vec<f64>)]) -> String {
    let mut out = format!(
        "<figure><figcaption>{}</figcaption><svg id=\"{id}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">",
        escape(title),
        escape(title)
    );
    let x_max = xs.last().copied().unwrap_or(0.0).max(1.0);
    let y_top = nice_top(
        lines
            .iter()
            .flat_map(|(_, _, ys)| ys.iter().copied())
            .fold(0.0, f64::max),
    );
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |v: f64| LEFT + plot_w * v / x_max;
    let y = |v: f64| TOP + plot_h * (1.0 - v / y_top);
    for step in 0..=2 {
        let value = y_top * step as f64 / 2.0;
        let (right, at, label_x) = (WIDTH - RIGHT, y(value), LEFT - 4.0);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{right}\" y1=\"{at:.1}\" y2=\"{at:.1}\" stroke=\"#eee\"/><text x=\"{label_x}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            at + 4.0,
            short(value)
        );
    }
    let step = time_step(x_max);
    for i in 0..=(x_max / step) as u64 {
        let value = step * i as f64;
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x(value),
            HEIGHT - 10.0,
            time_label(value, step)
        );
    }
    for (k, (label, color, ys)) in lines.iter().enumerate() {
        // A NaN is a gap (a second with nothing to show): the line stops and starts again.
        let mut path = String::new();
        let mut gap = true;
        for (px, py) in thin(xs, ys) {
            if py.is_nan() {
                gap = true;
                continue;
            }
            let command = if gap { 'M' } else { 'L' };
            let _ = write!(path, "{command}{:.1},{:.1} ", x(px), y(py));
            gap = false;
        }
        let _ = write!(
            out,
            "<path class=\"line\" d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\" style=\"fill:{color}\">{}</text>",
            path.trim_end(),
            LEFT + 8.0 + 90.0 * k as f64,
            TOP - 8.0,
            escape(label)
        );
    }
    if xs.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no samples</text>",
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
    }
    out + "</svg></figure>\n"
}

/// A bar chart of the latency distribution: one bar per doubling of latency.
fn distribution_chart(buckets: &Value) -> String {
    let buckets: Vec<(f64, f64)> = buckets
        .as_array()
        .map(|b| {
            b.iter()
                .map(|b| {
                    (
                        b["upto_ms"].as_f64().unwrap_or(0.0),
                        b["count"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let title = "latencies, by how long they took (bars double in width)";
    let mut out = format!(
        "<figure><figcaption>{title}</figcaption><svg id=\"chart-distribution\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{title}\">"
    );
    if buckets.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no latency measured</text>",
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return out + "</svg></figure>\n";
    }
    let top = nice_top(buckets.iter().map(|b| b.1).fold(0.0, f64::max));
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let bar = plot_w / buckets.len() as f64;
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
        LEFT - 4.0,
        TOP + 4.0,
        short(top),
        LEFT - 4.0,
        TOP + plot_h + 4.0
    );
    let label_every = buckets.len().div_ceil(8).max(1);
    for (i, (upto, count)) in buckets.iter().enumerate() {
        let h = plot_h * count / top;
        let _ = write!(
            out,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#06c\"><title>up to {} ms: {}</title></rect>",
            LEFT + bar * i as f64 + 1.0,
            TOP + plot_h - h,
            (bar - 2.0).max(1.0),
            h,
            short(*upto),
            number(*count)
        );
        if i % label_every == 0 {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">≤{}ms</text>",
                LEFT + bar * (i as f64 + 0.5),
                HEIGHT - 10.0,
                short(*upto)
            );
        }
    }
    out + "</svg></figure>\n"
}

/// `ms` since the Unix epoch as `YYYY-MM-DD hh:mm:ss`.
fn utc(ms: u64) -> String {
    net::calendar::date_time((ms / 1000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document() -> Value {
        json!({
            "schema_version": 1,
            "tool": "dummy-client 0.1.0",
            "scenario": "chat",
            "started_at_unix_ms": 1_796_123_456_000u64,
            "units": {"time": "milliseconds (_ms)", "rate": "per second (_per_sec)", "size": "bytes (_bytes)"},
            "settings": {"server": "127.0.0.1:7000", "server_name": "<b>evil</b>", "bots": 40, "server_tick_ms": null},
            "verdict": "failed",
            "reasons": ["3 of 8000 deliveries lost", "1 unexpected disconnects (<script>)"],
            "results": {"sent": 400, "lost": 3, "errors": {"RATE_LIMITED": 2}, "disconnect_reasons": {}, "latency_ms": {"p50": 1.5, "p99": 3.25}},
            "latency_distribution": [{"upto_ms": 0.1, "count": 5}, {"upto_ms": 0.2, "count": 0}, {"upto_ms": 0.4, "count": 9}],
            "series": [
                {"at_ms": 1000, "bots": 40, "sent": 10, "received": 200, "latency_p50_ms": 1.0, "latency_p99_ms": 2.0, "errors": 0, "disconnects": 0},
                {"at_ms": 2000, "bots": 40, "sent": 12, "received": 240, "latency_p50_ms": 1.1, "latency_p99_ms": 9.0, "errors": 2, "disconnects": 1}
            ]
        })
    }

    #[test]
    fn the_page_shows_the_verdict_reasons_settings_and_totals_escaped() {
        let page = render(&document());
        assert!(page.contains("<div id=\"verdict\" class=\"verdict failed\">FAILED"));
        assert!(page.contains("<li>3 of 8000 deliveries lost</li>"));
        assert!(page.contains("(&lt;script&gt;)"), "reasons are escaped");
        assert!(
            page.contains("&lt;b&gt;evil&lt;/b&gt;"),
            "settings are escaped"
        );
        assert!(
            !page.contains("<b>evil"),
            "nothing from the server is markup"
        );
        assert!(page.contains("<tr><th>bots</th><td class=\"n\">40</td></tr>"));
        let settings = page.split("<table id=\"settings\">").nth(1).unwrap();
        let settings = &settings[..settings.find("</table>").unwrap()];
        assert!(
            !settings.contains("server_tick_ms"),
            "unknown ones are left out"
        );
        assert!(page.contains("<tr><td>RATE_LIMITED</td><td class=\"n\">2</td></tr>"));
        assert!(page.contains("<tr><th>latency_ms</th><td>p50 1.500, p99 3.250</td></tr>"));
        assert!(
            page.contains("started 2026-12-01 11:10:56 UTC"),
            "{}",
            utc(1_796_123_456_000)
        );
    }

    #[test]
    fn the_page_draws_every_chart_and_carries_its_document() {
        let page = render(&document());
        for id in [
            "chart-throughput-sent",
            "chart-throughput-received",
            "chart-latency",
            "chart-bots",
            "chart-errors",
            "chart-distribution",
        ] {
            assert!(page.contains(&format!("<svg id=\"{id}\"")), "{id}");
        }
        // Two lines on the latency, three on the errors chart, one on each other.
        assert_eq!(page.matches("<path class=\"line\"").count(), 8);
        assert_eq!(page.matches("<rect class=\"bar\"").count(), 3);
        let data = page
            .split("<script type=\"application/json\" id=\"report-data\">")
            .nth(1)
            .and_then(|rest| rest.split("</script>").next())
            .unwrap();
        let parsed: Value = serde_json::from_str(data).unwrap();
        assert_eq!(
            parsed,
            document(),
            "the embedded document is the whole document"
        );
        assert!(
            !data.contains('<'),
            "nothing in the data can close its element"
        );
    }

    #[test]
    fn drops_show_in_their_table_and_resumes_among_the_totals() {
        let mut document = super::tests::document();
        document["results"]["drops"] = json!({"closed": 7, "stalled": 5});
        document["results"]["resumes"] = json!(12);
        let page = render(&document);
        assert!(page.contains("<table id=\"drops\">"), "{page}");
        assert!(
            page.contains("<tr><th>resumes</th><td class=\"n\">12</td></tr>"),
            "{page}"
        );
    }

    #[test]
    fn failovers_show_in_their_table_and_among_the_totals() {
        let mut document = document();
        document["results"]["failovers"] = json!(13);
        document["results"]["failover_reasons"] = json!({"peer closed": 13});
        document["results"]["missed_in_failover"] = json!(120);
        document["results"]["recovery_ms"] =
            json!({"p50": 95.5, "p99": 180.25, "max": 181.0, "count": 13});
        let page = render(&document);
        assert!(page.contains("<table id=\"failovers\">"), "{page}");
        assert!(!page.contains("<table id=\"drops\">"), "no drops, no table");
        assert!(page.contains("<tr><td>peer closed</td><td class=\"n\">13</td></tr>"));
        assert!(page.contains("<tr><th>missed_in_failover</th><td class=\"n\">120</td></tr>"));
        let recovery = page
            .split("<tr><th>recovery_ms</th><td>")
            .nth(1)
            .and_then(|rest| rest.split("</td>").next())
            .unwrap();
        for part in ["p50 95.500", "p99 180.2", "max 181", "count 13"] {
            assert!(recovery.contains(part), "{recovery}");
        }
        assert!(
            !render(&super::tests::document()).contains("<table id=\"failovers\">"),
            "a document without failover reasons has no such table"
        );
    }

    #[test]
    fn the_page_needs_nothing_from_elsewhere() {
        let page = render(&document());
        for outside in ["src=", "href=", "<link", "@import", "url(", "<script>"] {
            assert!(!page.contains(outside), "{outside}");
        }
    }

    #[test]
    fn long_runs_are_thinned_keeping_their_spikes() {
        let xs: Vec<f64> = (0..10_000).map(f64::from).collect();
        let mut ys = vec![1.0; 10_000];
        ys[5_003] = 500.0;
        let points = thin(&xs, &ys);
        assert!(points.len() <= MAX_POINTS, "{}", points.len());
        assert!(points.iter().any(|&(_, y)| y == 500.0));
        assert_eq!(points.last().unwrap().0, 9_999.0);
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_top(0.0), 1.0);
        assert_eq!(nice_top(7.0), 10.0);
        assert_eq!(nice_top(130.0), 200.0);
        assert_eq!(nice_top(4_100.0), 5_000.0);
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(short(0.5), "0.5");
        assert_eq!(short(2_500.0), "2.5k");
        assert_eq!(short(10_000_000.0), "10M");
        assert_eq!(short(25.0), "25");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(time_step(30.0), 10.0);
        assert_eq!(time_step(3.2), 1.0);
        assert_eq!(time_step(600.0), 120.0);
        assert_eq!(time_step(86_400.0), 21_600.0);
        assert_eq!(time_label(240.0, 120.0), "4m");
        assert_eq!(time_label(43_200.0, 21_600.0), "12h");
        assert_eq!(time_label(20.0, 10.0), "20s");
    }

    #[test]
    fn a_line_stops_where_a_second_has_nothing_to_show() {
        let chart = line_chart(
            "c",
            "latency",
            &[1.0, 2.0, 3.0, 4.0],
            &[("p50", "#000", vec![5.0, f64::NAN, 7.0, 8.0])],
        );
        let path = chart
            .split(" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(path.matches('M').count(), 2, "{path}");
        assert_eq!(path.matches('L').count(), 1, "{path}");
        assert!(!chart.contains("NaN"), "{chart}");
    }

    #[test]
    fn a_short_last_sample_is_drawn_as_a_rate() {
        let rates = per_second(&[1.0, 2.0, 2.5], &[100.0, 120.0, 60.0]);
        assert_eq!(rates, [100.0, 120.0, 120.0]);
    }
}
