//! A campaign's results over time as a picture: stacked bars, one bucket of time each, one
//! series per delivering channel and one for failures, with the same numbers as a table for
//! screen readers.
//!
//! The bucket is chosen from the campaign's span so the chart has at most [`MAX_BARS`] bars;
//! the store counts the results per bucket ([`cascade_engine::Store::campaign_series`]), and
//! everything is laid out here, in numbers; the template only draws what it is given.

use std::collections::BTreeMap;
use std::time::Duration;

use cascade_engine::Timestamp;
use cascade_engine::store::SeriesPoint;
use serde::Serialize;

/// The most bars the chart draws.
pub(crate) const MAX_BARS: u64 = 60;
/// Bucket sizes the chart uses, in seconds, smallest first; past the last, whole weeks.
const NICE: [u64; 19] =
    [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 7_200, 10_800, 21_600, 43_200, 86_400, 172_800];
const WEEK: u64 = 604_800;
/// The drawing's size in SVG units (it scales to the page).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
/// Room for the count labels on the left, and the time labels below.
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;
/// The widest a bar is drawn (with few buckets, the rest of its slot stays empty).
const MAX_BAR_WIDTH: f64 = 40.0;
/// The series name of results that did not deliver (`failed` and `refused`).
pub(crate) const FAILED: &str = "failed";

/// The smallest bucket that cuts `span` into at most [`MAX_BARS`] pieces.
pub(crate) fn bucket_for(span: Duration) -> Duration {
    let secs = span.as_secs().max(1);
    let fits = |size: u64| secs.div_ceil(size) <= MAX_BARS;
    let size = NICE.iter().copied().find(|&s| fits(s)).unwrap_or_else(|| secs.div_ceil(MAX_BARS).div_ceil(WEEK) * WEEK);
    Duration::from_secs(size)
}

/// The whole picture.
#[derive(Debug, Serialize)]
pub(crate) struct Chart {
    pub(crate) width: f64,
    pub(crate) height: f64,
    pub(crate) left: f64,
    pub(crate) bottom: f64,
    /// The series, in legend order, with their totals and bars.
    pub(crate) series: Vec<Series>,
    pub(crate) y_ticks: Vec<Tick>,
    pub(crate) x_ticks: Vec<Tick>,
    /// The buckets that hold results, oldest first: the table beside the picture.
    pub(crate) rows: Vec<Row>,
    /// The bucket in words (`5 min`).
    pub(crate) bucket: String,
    /// The chart in one sentence, for its description.
    pub(crate) summary: String,
    /// Whether any result has come yet.
    pub(crate) empty: bool,
}

/// One series: a channel that delivered, or `failed`.
#[derive(Debug, Serialize)]
pub(crate) struct Series {
    pub(crate) name: String,
    /// Its CSS class (`series-0`, …, `series-failed`).
    pub(crate) class: String,
    pub(crate) total: u64,
    /// Its piece of each bucket's bar, where it has one.
    pub(crate) bars: Vec<Bar>,
}

/// One piece of a stacked bar.
#[derive(Debug, Serialize)]
pub(crate) struct Bar {
    pub(crate) x: f64,
    pub(crate) y: f64,
    pub(crate) w: f64,
    pub(crate) h: f64,
    /// `sms: 12 at 10:05`.
    pub(crate) title: String,
}

/// An axis label.
#[derive(Debug, Serialize)]
pub(crate) struct Tick {
    pub(crate) x: f64,
    pub(crate) y: f64,
    pub(crate) label: String,
}

/// One bucket in the table: its start and the count of each series, in legend order.
#[derive(Debug, Serialize)]
pub(crate) struct Row {
    pub(crate) at: String,
    pub(crate) counts: Vec<u64>,
}

/// Lays out `points` counted in buckets of `bucket` between `from` and `to`, merging buckets
/// when the points reach past that span and would make more than [`MAX_BARS`] bars.
/// `channels` orders the delivering channels' series (the policy's order); others follow by
/// name.
pub(crate) fn layout(
    points: &[SeriesPoint],
    bucket: Duration,
    from: Timestamp,
    to: Timestamp,
    channels: &[String],
) -> Chart {
    let size = i64::try_from(bucket.as_nanos()).unwrap_or(i64::MAX).max(1);
    let nanos = |t: Timestamp| t.timestamp_nanos_opt().unwrap_or_default();
    let floor = |n: i64, s: i64| n - n.rem_euclid(s);
    let mut first = floor(nanos(from.min(to)), size);
    let mut last = floor(nanos(to.max(from)), size);
    for p in points {
        first = first.min(nanos(p.at));
        last = last.max(nanos(p.at));
    }
    // Buckets the store made are multiples of `size`: whole multiples of them merge exactly.
    let count = |s: i64| ((floor(last, s) - floor(first, s)) / s + 1) as u64;
    let merge = count(size).div_ceil(MAX_BARS).max(1) as i64;
    let size = size.saturating_mul(merge);
    let (first, n) = (floor(first, size), count(size));

    // The series: delivering channels in the policy's order, then the others, then failures.
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut failed = 0;
    for p in points {
        match (p.outcome.as_str(), &p.channel) {
            ("delivered", Some(c)) => *totals.entry(c.to_string()).or_default() += p.count,
            ("failed" | "refused", _) => failed += p.count,
            _ => {}
        }
    }
    let mut names: Vec<String> = channels.iter().filter(|c| totals.contains_key(*c)).cloned().collect();
    names.extend(totals.keys().filter(|c| !channels.contains(c)).cloned());
    let mut series: Vec<Series> = names
        .iter()
        .enumerate()
        .map(|(i, c)| Series {
            name: c.clone(),
            class: format!("series-{}", i % 6),
            total: totals[c],
            bars: Vec::new(),
        })
        .collect();
    if failed > 0 {
        let class = "series-failed".to_owned();
        series.push(Series { name: FAILED.to_owned(), class, total: failed, bars: Vec::new() });
    }

    // Counts per bucket and series.
    let mut grid = vec![vec![0u64; series.len()]; n as usize];
    for p in points {
        let name = match (p.outcome.as_str(), &p.channel) {
            ("delivered", Some(c)) => c.as_str(),
            ("failed" | "refused", _) => FAILED,
            _ => continue,
        };
        let (Some(s), Ok(b)) =
            (series.iter().position(|x| x.name == name), usize::try_from((floor(nanos(p.at), size) - first) / size))
        else {
            continue;
        };
        if let Some(cell) = grid.get_mut(b).and_then(|row| row.get_mut(s)) {
            *cell += p.count;
        }
    }

    let step_secs = size / 1_000_000_000;
    let time = |b: usize| chrono::DateTime::from_timestamp_nanos(first + b as i64 * size);
    let span_days = (time(n as usize - 1) - time(0)).num_days() > 0;
    let format = if step_secs >= 86_400 {
        "%Y-%m-%d"
    } else if span_days {
        "%m-%d %H:%M"
    } else if step_secs < 60 {
        "%H:%M:%S"
    } else {
        "%H:%M"
    };
    let label = |b: usize| time(b).format(format).to_string();

    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let highest = grid.iter().map(|row| row.iter().sum::<u64>()).max().unwrap_or(0);
    let step = nice_step(highest.div_ceil(4).max(1));
    let top = highest.div_ceil(step).max(1) * step;
    let y = |v: u64| TOP + plot_h - (v as f64 / top as f64) * plot_h;
    let slot = plot_w / n as f64;
    // A gap between bars wide enough to see one; bars no wider than a few dozen units.
    let width = (slot - if slot > 4.0 { 1.0 } else { 0.0 }).clamp(0.5, MAX_BAR_WIDTH);

    let mut rows = Vec::new();
    for (b, counts) in grid.iter().enumerate() {
        let mut below = 0;
        for (s, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let (y0, y1) = (y(below), y(below + c));
            let title = format!("{}: {c} at {}", series[s].name, label(b));
            series[s].bars.push(Bar {
                x: round(LEFT + b as f64 * slot + (slot - width) / 2.0),
                y: round(y1),
                w: round(width),
                h: round(y0 - y1),
                title,
            });
            below += c;
        }
        if below > 0 {
            rows.push(Row { at: label(b), counts: counts.clone() });
        }
    }
    let y_ticks = (0..=top / step)
        .map(|i| Tick { x: LEFT - 6.0, y: round(y(i * step)), label: (i * step).to_string() })
        .collect();
    let every = (n as usize).div_ceil(6).max(1);
    let x_ticks = (0..n as usize)
        .step_by(every)
        .map(|b| Tick { x: round(LEFT + (b as f64 + 0.5) * slot), y: HEIGHT - 8.0, label: label(b) })
        .collect();

    let bucket = crate::console::cascades::humantime_secs(Duration::from_secs(step_secs.max(0) as u64));
    let summary = if series.is_empty() {
        "No recipient has finished yet.".to_owned()
    } else {
        let parts: Vec<String> = series
            .iter()
            .map(|s| {
                if s.name == FAILED {
                    format!("{} failed", s.total)
                } else {
                    format!("{} delivered by {}", s.total, s.name)
                }
            })
            .collect();
        format!("{}, from {} to {} UTC, in steps of {bucket}.", parts.join(", "), label(0), label(n as usize - 1))
    };
    Chart {
        width: WIDTH,
        height: HEIGHT,
        left: LEFT,
        bottom: TOP + plot_h,
        empty: series.is_empty(),
        series,
        y_ticks,
        x_ticks,
        rows,
        bucket,
        summary,
    }
}

/// 1, 2 or 5 times a power of ten, at least `n`.
fn nice_step(n: u64) -> u64 {
    let mut power = 1u64;
    loop {
        for m in [1, 2, 5] {
            if m * power >= n {
                return m * power;
            }
        }
        power = power.saturating_mul(10);
    }
}

/// Two decimals are plenty for a drawing, and keep the page small.
fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_engine::ChannelName;

    fn t(s: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_767_225_600 + s, 0).expect("time")
    }

    fn point(s: i64, outcome: &str, channel: Option<&str>, count: u64) -> SeriesPoint {
        SeriesPoint { at: t(s), outcome: outcome.into(), channel: channel.map(ChannelName::new), count }
    }

    #[test]
    fn the_bucket_keeps_the_bars_between_a_few_and_sixty() {
        let table = [(0, 1), (45, 1), (60, 1), (61, 2), (600, 10), (3_600, 60), (86_400, 1_800), (604_800, 10_800)];
        for (span, bucket) in table {
            assert_eq!(bucket_for(Duration::from_secs(span)).as_secs(), bucket, "span {span} s");
        }
        assert_eq!(bucket_for(Duration::from_secs(90_000_000)).as_secs(), 3 * WEEK, "past two days: weeks");
        for span in [90, 1_000, 5_000, 40_000, 200_000, 3_000_000, 90_000_000] {
            let b = bucket_for(Duration::from_secs(span)).as_secs();
            assert!(span.div_ceil(b) <= MAX_BARS && span.div_ceil(b) > MAX_BARS / 3, "{span} s in {b} s buckets");
        }
    }

    #[test]
    fn bars_stack_one_series_per_channel_and_failures_last() {
        let points = [
            point(0, "delivered", Some("sms"), 3),
            point(0, "delivered", Some("whatsapp"), 5),
            point(60, "failed", None, 2),
            point(60, "refused", None, 1),
            point(120, "delivered", Some("sms"), 4),
            point(120, "cancelled", None, 7),
        ];
        let chart = layout(&points, Duration::from_secs(60), t(0), t(150), &["whatsapp".into(), "sms".into()]);
        let names: Vec<(&str, u64)> = chart.series.iter().map(|s| (s.name.as_str(), s.total)).collect();
        assert_eq!(names, [("whatsapp", 5), ("sms", 7), ("failed", 3)], "the policy's order, then failures");
        assert_eq!(chart.bucket, "1 min");
        let rows: Vec<(&str, &[u64])> = chart.rows.iter().map(|r| (r.at.as_str(), r.counts.as_slice())).collect();
        assert_eq!(rows, [("00:00", &[5, 3, 0][..]), ("00:01", &[0, 0, 3][..]), ("00:02", &[0, 4, 0][..])]);
        // The first bucket's bar: WhatsApp at the bottom, SMS on it, reaching 8 of a scale of 8.
        let bars: Vec<&Bar> = chart.series.iter().flat_map(|s| &s.bars).collect();
        let first: Vec<&Bar> = bars.iter().copied().filter(|b| b.title.ends_with("at 00:00")).collect();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].title, "whatsapp: 5 at 00:00");
        assert!((first[0].y - (first[1].y + first[1].h)).abs() < 0.02, "stacked: {first:?}");
        assert!((first[1].y - TOP).abs() < 0.02, "the highest bar reaches the top: {first:?}");
        // Three buckets of 220 units each: bars 40 wide, in the middle of their slot.
        assert!(bars.iter().all(|b| b.w == MAX_BAR_WIDTH), "{bars:?}");
        assert_eq!(first[0].x, LEFT + 90.0);
        assert_eq!(chart.y_ticks.last().map(|t| t.label.as_str()), Some("8"));
        assert!(
            chart.summary.starts_with("5 delivered by whatsapp, 7 delivered by sms, 3 failed"),
            "{}",
            chart.summary
        );
    }

    #[test]
    fn points_past_the_span_widen_it_and_merge_buckets() {
        // Ten minutes planned in 10 s buckets, but a result came an hour later.
        let points = [point(0, "delivered", Some("sms"), 1), point(3_600, "delivered", Some("sms"), 1)];
        let chart = layout(&points, Duration::from_secs(10), t(0), t(600), &[]);
        assert_eq!(chart.rows.len(), 2);
        assert_eq!(chart.bucket, "70 s", "361 buckets of 10 s merge seven at a time");
        assert_eq!(chart.rows[1].at, "00:59", "the hour's result is in the bucket from 3,570 s");
        let widest = chart.series.iter().flat_map(|s| &s.bars).map(|b| b.w).fold(0.0, f64::max);
        assert!(widest <= (WIDTH - LEFT - RIGHT) / 52.0, "52 bars share the width: {widest}");
        assert!(chart.x_ticks.len() <= 7);
    }

    #[test]
    fn no_results_is_an_empty_chart() {
        let chart = layout(&[], Duration::from_secs(1), t(0), t(0), &["sms".into()]);
        assert!(chart.empty && chart.series.is_empty() && chart.rows.is_empty());
        assert_eq!(chart.summary, "No recipient has finished yet.");
        assert_eq!(chart.y_ticks.len(), 2, "0 and 1");
    }

    #[test]
    fn steps_are_one_two_or_five() {
        let got: Vec<u64> = [1, 2, 3, 6, 11, 30, 499].into_iter().map(nice_step).collect();
        assert_eq!(got, [1, 2, 5, 10, 20, 50, 500]);
    }
}
