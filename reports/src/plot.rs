//! The report's charts, drawn with plotters as inline SVG.
//!
//! Every chart shares the test's time axis (seconds since the start) and draws each fault as a
//! shaded band, so that latency, throughput and leadership line up with what the nemesis did.

use crate::results::PhaseStats;
use ordeal_checker::perf::{Digest, FaultWindow};
use ordeal_history::membership::{CatchUpSample, PromoteRecord};
use ordeal_history::{OpType, PhaseKind};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;

const W: u32 = 1100;
const H: u32 = 320;
const OK: RGBColor = RGBColor(46, 139, 87);
const FAIL: RGBColor = RGBColor(214, 39, 40);
const INFO: RGBColor = RGBColor(230, 159, 0);
const BAND: RGBColor = RGBColor(255, 120, 120);

/// Most points a scatter plot draws; beyond it `ok` points are sampled evenly (failures and
/// unknown outcomes are always all drawn). Keeps a million-op report small.
pub const MAX_POINTS: usize = 20_000;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn err(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

/// Renders into an SVG string with `draw`, which gets the drawing area.
fn svg(height: u32, draw: impl FnOnce(&Area<'_>) -> Result<(), String>) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

fn kind_color(kind: OpType) -> RGBColor {
    match kind {
        OpType::Ok => OK,
        OpType::Fail => FAIL,
        _ => INFO,
    }
}

/// The x range: the whole test.
fn x_range(d: &Digest) -> std::ops::Range<f64> {
    0.0..secs(d.end).max(0.001)
}

type LogChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::combinators::LogCoord<f64>>,
>;

/// Axes for latency: the test's time against milliseconds on a log scale, fault bands drawn.
fn latency_axes<'a, 'b>(
    root: &'a Area<'b>,
    d: &Digest,
    faults: &[FaultWindow],
    max_y: f64,
) -> Result<LogChart<'a, 'b>, String> {
    let mut chart = ChartBuilder::on(root)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range(d), (0.01..max_y).log_scale())
        .map_err(err)?;
    chart.configure_mesh().x_desc("time (s)").y_desc("latency (ms)").draw().map_err(err)?;
    bands(&mut chart, faults, 0.01, max_y)?;
    Ok(chart)
}

type LinearChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Axes for one lane per node: time up to `end` s (with room left of zero for the lane labels)
/// against `lanes` lanes and `head` of room above them, fault bands drawn over the lanes.
fn lane_axes<'a, 'b>(
    root: &'a Area<'b>,
    end: f64,
    lanes: f64,
    head: f64,
    faults: &[FaultWindow],
) -> Result<LinearChart<'a, 'b>, String> {
    let mut chart = ChartBuilder::on(root)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(-end * 0.06..end, 0.0..lanes + head)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("node")
        .y_label_formatter(&|_| String::new())
        .disable_y_mesh()
        .draw()
        .map_err(err)?;
    bands(&mut chart, faults, 0.0, lanes)?;
    Ok(chart)
}

/// Latency of every op over time, coloured by outcome, shaped by operation, on a log scale.
pub fn latency(d: &Digest, faults: &[FaultWindow]) -> Result<(String, String), String> {
    let points: Vec<(f64, f64, OpType, u16)> = d
        .spans
        .iter()
        .filter_map(|s| s.ret.map(|r| (secs(r), (r.saturating_sub(s.call) as f64 / 1e6).max(0.01), s.kind, s.f)))
        .collect();
    let oks = points.iter().filter(|p| p.2 == OpType::Ok).count();
    let others = points.len() - oks;
    let stride = oks.div_ceil(MAX_POINTS.saturating_sub(others).max(1)).max(1);
    let max_y = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.5;
    let caption = if stride > 1 {
        format!(
            "Latency of every op by completion time; 1 in {stride} ok ops shown ({oks} ok in all), every fail and info"
        )
    } else {
        format!("Latency of every op by completion time ({} ops)", points.len())
    };
    let chart = svg(H, |root| {
        let mut chart = latency_axes(root, d, faults, max_y)?;
        let mut seen_ok = 0usize;
        let kept = points.iter().filter(|p| {
            if p.2 != OpType::Ok {
                return true;
            }
            seen_ok += 1;
            seen_ok.is_multiple_of(stride)
        });
        let mut by_shape: [Vec<(f64, f64, RGBColor)>; 3] = Default::default();
        for p in kept {
            by_shape[(p.3 % 3) as usize].push((p.0, p.1, kind_color(p.2)));
        }
        chart.draw_series(by_shape[0].iter().map(|(x, y, c)| Circle::new((*x, *y), 2, c.filled()))).map_err(err)?;
        chart
            .draw_series(by_shape[1].iter().map(|(x, y, c)| TriangleMarker::new((*x, *y), 3, c.filled())))
            .map_err(err)?;
        chart
            .draw_series(by_shape[2].iter().map(|(x, y, c)| Cross::new((*x, *y), 3, c.stroke_width(1))))
            .map_err(err)?;
        Ok(())
    })?;
    let shapes: Vec<String> =
        d.names.iter().enumerate().map(|(i, n)| format!("{n}: {}", ["circle", "triangle", "cross"][i % 3])).collect();
    Ok((chart, format!("{caption}. Green ok, red fail, amber info; {}.", shapes.join(", "))))
}

/// Draws named lines, each (name, color, points), with a legend.
fn lines<'a, 'b: 'a, Y, P>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    named: impl IntoIterator<Item = (&'static str, RGBColor, P)>,
) -> Result<(), String>
where
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    P: IntoIterator<Item = (f64, f64)>,
{
    for (name, color, points) in named {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
    Ok(())
}

/// Draws fault bands over a chart's full height, labelled with the fault.
fn bands<Y: plotters::coord::ranged1d::Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    faults: &[FaultWindow],
    low: f64,
    high: f64,
) -> Result<(), String> {
    for f in faults {
        let (x0, x1) = (secs(f.start), f.stop.map_or(secs(f.start) + 0.05, secs));
        chart
            .draw_series(std::iter::once(Rectangle::new([(x0, low), (x1, high)], BAND.mix(0.18).filled())))
            .map_err(err)?;
        let targets: Vec<String> = f.targets.iter().map(|t| format!("n{t}")).collect();
        let label = format!("{} {}", f.fault, targets.join(","));
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (x0, high),
                ("sans-serif", 11).into_font().color(&BAND.mix(0.9)),
            )))
            .map_err(err)?;
    }
    Ok(())
}

/// Buckets of the test's time for per-window figures: about 100 of at least 1 s.
fn buckets(d: &Digest) -> (f64, usize) {
    let width = (secs(d.end) / 100.0).max(1.0);
    (width, (secs(d.end) / width).ceil().max(1.0) as usize)
}

/// p50, p95 and p99 latency of `ok` ops per time window.
pub fn quantiles(d: &Digest, faults: &[FaultWindow]) -> Result<(String, String), String> {
    let (width, n) = buckets(d);
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); n];
    for s in &d.spans {
        if let (OpType::Ok, Some(r)) = (s.kind, s.ret) {
            let b = ((secs(r) / width) as usize).min(n - 1);
            per[b].push(r.saturating_sub(s.call) as f64 / 1e6);
        }
    }
    let mut series: [Vec<(f64, f64)>; 3] = Default::default();
    for (b, v) in per.iter_mut().enumerate() {
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1].max(0.01);
        let x = (b as f64 + 0.5) * width;
        series[0].push((x, at(0.5)));
        series[1].push((x, at(0.95)));
        series[2].push((x, at(0.99)));
    }
    let max_y = series[2].iter().map(|p| p.1).fold(1.0, f64::max) * 1.5;
    let chart = svg(H, |root| {
        let mut chart = latency_axes(root, d, faults, max_y)?;
        let names = [("p50", BLUE), ("p95", OK), ("p99", FAIL)];
        lines(&mut chart, names.into_iter().zip(series.iter()).map(|((n, c), p)| (n, c, p.iter().copied())))
    })?;
    Ok((chart, format!("Latency quantiles of ok ops per {width:.0} s window.")))
}

/// The phases as bands along the top of a chart, each labelled with its kind and rate.
fn phase_bands(chart: &mut LinearChart<'_, '_>, phases: &[PhaseStats], max_y: f64) -> Result<(), String> {
    for p in phases {
        let color = match p.kind {
            PhaseKind::Main => RGBColor(120, 120, 200),
            PhaseKind::Heal => RGBColor(80, 170, 80),
            PhaseKind::FinalReads => RGBColor(170, 90, 200),
        };
        let band = Rectangle::new([(p.start_s, max_y * 0.93), (p.end_s, max_y)], color.mix(0.35).filled());
        chart.draw_series(std::iter::once(band)).map_err(err)?;
        let rate = if p.rate > 0.0 { format!(" {:.0}/s", p.rate) } else { String::new() };
        let label = Text::new(format!("{}{rate}", p.kind), (p.start_s, max_y * 0.995), ("sans-serif", 11).into_font());
        chart.draw_series(std::iter::once(label)).map_err(err)?;
    }
    Ok(())
}

/// Completions per second by outcome, the phases as bands along the top.
pub fn throughput(d: &Digest, faults: &[FaultWindow], phases: &[PhaseStats]) -> Result<(String, String), String> {
    let (width, n) = buckets(d);
    let mut counts = vec![[0u64; 3]; n];
    for s in &d.spans {
        let Some(r) = s.ret else { continue };
        let b = ((secs(r) / width) as usize).min(n - 1);
        counts[b][match s.kind {
            OpType::Ok => 0,
            OpType::Fail => 1,
            _ => 2,
        }] += 1;
    }
    let max_y = counts.iter().flatten().copied().max().unwrap_or(1) as f64 / width * 1.15 + 1.0;
    let chart = svg(H, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range(d), 0.0..max_y)
            .map_err(err)?;
        chart.configure_mesh().x_desc("time (s)").y_desc("ops/s").draw().map_err(err)?;
        bands(&mut chart, faults, 0.0, max_y)?;
        phase_bands(&mut chart, phases, max_y)?;
        let names = [("ok", OK), ("fail", FAIL), ("info", INFO)];
        lines(
            &mut chart,
            names.into_iter().enumerate().map(|(k, (name, color))| {
                let points =
                    counts.iter().enumerate().map(move |(b, c)| ((b as f64 + 0.5) * width, c[k] as f64 / width));
                (name, color, points)
            }),
        )
    })?;
    Ok((chart, format!("Completions per second by outcome, per {width:.0} s window.")))
}

/// The write gap of each fault, as bars.
pub fn gaps(faults: &[FaultWindow]) -> Result<(String, String), String> {
    let n = faults.len().max(1);
    let max_y = faults.iter().filter_map(|f| f.gap_ms).fold(100.0, f64::max) * 1.2;
    let chart = svg(260, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..n as f64, 0.0..max_y)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("fault")
            .y_desc("write gap (ms)")
            .x_labels(n.min(20))
            .x_label_formatter(&|x| format!("#{}", *x as usize + 1))
            .draw()
            .map_err(err)?;
        for (i, f) in faults.iter().enumerate() {
            let x = i as f64;
            match f.gap_ms {
                Some(g) => {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(x + 0.15, 0.0), (x + 0.85, g)],
                            BLUE.mix(0.7).filled(),
                        )))
                        .map_err(err)?;
                    chart
                        .draw_series(std::iter::once(Text::new(format!("{g:.0}"), (x + 0.3, g), ("sans-serif", 11))))
                        .map_err(err)?;
                }
                None => {
                    chart
                        .draw_series(std::iter::once(Text::new(
                            "no recovery",
                            (x + 0.1, max_y / 2.0),
                            ("sans-serif", 11).into_font().color(&FAIL),
                        )))
                        .map_err(err)?;
                }
            }
            chart
                .draw_series(std::iter::once(Text::new(f.fault.clone(), (x + 0.1, max_y * 0.97), ("sans-serif", 10))))
                .map_err(err)?;
        }
        Ok(())
    })?;
    Ok((chart, "Write gap per fault: from the fault to the first write a surviving node acknowledged.".into()))
}

/// A node's (role, term) in each group, or `None` when it did not answer.
type Roles = Option<Vec<(String, u64)>>;

/// One status sample: every node's roles.
struct Sample {
    time: f64,
    nodes: Vec<(u64, Roles)>,
}

/// Parses `status.jsonl`.
fn samples(status: &str) -> Vec<Sample> {
    status
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let time = v["time"].as_u64().map_or(0.0, secs);
            let mut nodes: Vec<(u64, Roles)> = v["nodes"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, n)| {
                            let id = k.parse().ok()?;
                            let groups = n["up"].as_bool().unwrap_or(false).then(|| {
                                n["groups"]
                                    .as_array()
                                    .map(|gs| {
                                        gs.iter().map(|g| (role(g, id), g["term"].as_u64().unwrap_or(0))).collect()
                                    })
                                    .unwrap_or_default()
                            });
                            Some((id, groups))
                        })
                        .collect()
                })
                .unwrap_or_default();
            nodes.sort_by_key(|n| n.0);
            Sample { time, nodes }
        })
        .collect()
}

/// A node's role in a group's status: `learner` when the group lists it as one (raft itself calls
/// a learner a follower).
fn role(group: &Value, id: u64) -> String {
    let learners = group["learners"].as_array();
    if learners.is_some_and(|l| l.iter().any(|n| n.as_u64() == Some(id))) {
        return "learner".into();
    }
    group["role"].as_str().unwrap_or("?").to_owned()
}

fn role_color(role: Option<&str>) -> RGBColor {
    match role {
        Some("leader") => RGBColor(31, 78, 160),
        Some("follower") => RGBColor(158, 196, 235),
        Some("candidate" | "pre-candidate") => INFO,
        Some("learner") => RGBColor(150, 210, 150),
        Some(_) => RGBColor(200, 200, 200),
        None => RGBColor(90, 90, 90),
    }
}

/// A membership change, marked on the raft role timeline in its node's lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipMark {
    /// When, in ns since the run started.
    pub time: u64,
    /// The node that joined, was promoted or was removed.
    pub node: u64,
    /// `add-learner`, `promote`, `promote refused` or `remove`.
    pub label: String,
}

/// Which node led each raft group when: a lane per node, coloured by role (down in dark grey),
/// with the term written where leadership changed and the membership changes (group 0's) marked
/// in their node's lane.
pub fn raft_timeline(
    status: &str,
    d: &Digest,
    faults: &[FaultWindow],
    changes: &[MembershipMark],
) -> Result<Vec<(String, String)>, String> {
    let samples = samples(status);
    let groups =
        samples.iter().flat_map(|s| s.nodes.iter()).filter_map(|n| n.1.as_ref().map(Vec::len)).max().unwrap_or(0);
    // Every node that was ever a member: nodes join and leave with membership changes, and a lane
    // is empty while its node is not a member.
    let nodes: Vec<u64> = samples
        .iter()
        .flat_map(|s| s.nodes.iter().map(|n| n.0))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if samples.is_empty() || nodes.is_empty() {
        return Ok(Vec::new());
    }
    let end = secs(d.end).max(samples.last().map_or(0.0, |s| s.time));
    let mut out = Vec::new();
    for g in 0..groups.clamp(1, 4) {
        let height = 80 + 40 * nodes.len() as u32;
        let chart = svg(height, |root| {
            let mut chart = lane_axes(root, end.max(0.001), nodes.len() as f64, 0.0, faults)?;
            let mut last_leader_term = None;
            for (i, s) in samples.iter().enumerate() {
                let next = samples.get(i + 1).map_or(end, |n| n.time);
                for (id, groups) in &s.nodes {
                    let lane = nodes.iter().position(|n| n == id).unwrap_or(0);
                    let role = groups.as_ref().map(|gs| gs.get(g).map_or("?", |r| r.0.as_str()));
                    let y = lane as f64;
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(s.time, y + 0.15), (next, y + 0.85)],
                            role_color(role).filled(),
                        )))
                        .map_err(err)?;
                    if role == Some("leader") {
                        let term = groups.as_ref().and_then(|gs| gs.get(g)).map_or(0, |r| r.1);
                        if last_leader_term != Some(term) {
                            last_leader_term = Some(term);
                            chart
                                .draw_series(std::iter::once(Text::new(
                                    format!("term {term}"),
                                    (s.time, y + 0.95),
                                    ("sans-serif", 11),
                                )))
                                .map_err(err)?;
                        }
                    }
                }
            }
            if g == 0 {
                membership_marks(&mut chart, &nodes, changes)?;
            }
            let label = ("sans-serif", 13).into_font().color(&BLACK);
            for (lane, node) in nodes.iter().enumerate() {
                let at = (-end * 0.055, lane as f64 + 0.6);
                chart.plotting_area().draw(&Text::new(format!("n{node}"), at, label.clone())).map_err(err)?;
            }
            Ok(())
        })?;
        out.push((chart, format!("Raft group {g}: each node's role over time (dark blue leader, light blue follower, green learner, amber candidate, dark grey down, empty while not a member), sampled every 250 ms{}.", if g == 0 && !changes.is_empty() { "; black ticks: membership changes, labelled" } else { "" })));
    }
    Ok(out)
}

/// A black tick across each change's lane at its time, with its label above.
fn membership_marks(chart: &mut LinearChart<'_, '_>, nodes: &[u64], changes: &[MembershipMark]) -> Result<(), String> {
    for c in changes {
        let Some(lane) = nodes.iter().position(|n| *n == c.node) else { continue };
        let (at, y) = (secs(c.time), lane as f64);
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(at, y), (at, y + 1.0)], BLACK.stroke_width(2))))
            .map_err(err)?;
        let font = ("sans-serif", 11).into_font().color(&BLACK);
        chart.draw_series(std::iter::once(Text::new(c.label.clone(), (at, y + 0.45), font))).map_err(err)?;
    }
    Ok(())
}

/// One learner's catch-up: its applied index against the leader's commit index over time, the
/// samples in which a snapshot was on its way to it as bands, each promote as a line (green
/// accepted, red refused, labelled), and the faults as bands.
pub fn catch_up(
    node: u64,
    samples: &[CatchUpSample],
    promotes: &[(&str, &PromoteRecord)],
    faults: &[FaultWindow],
) -> Result<(String, String), String> {
    let times = samples.iter().map(|s| secs(s.time)).chain(promotes.iter().map(|p| secs(p.1.time)));
    let (t0, t1) = times.fold((f64::MAX, f64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let pad = ((t1 - t0) * 0.1).max(0.2);
    // Room on the right for the last promote's label.
    let x = (t0 - pad).max(0.0)..(t1 + 3.0 * pad);
    let indices = samples.iter().flat_map(|s| [s.applied_index, s.leader_commit]).flatten();
    let gates = promotes.iter().map(|p| p.1.min_applied_index);
    let max_y = indices.chain(gates).max().unwrap_or(1) as f64 * 1.15 + 1.0;
    let near: Vec<FaultWindow> = faults
        .iter()
        .filter(|f| secs(f.start) <= x.end && f.stop.is_none_or(|s| secs(s) >= x.start))
        .cloned()
        .collect();
    let chart = svg(H, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(x.clone(), 0.0..max_y)
            .map_err(err)?;
        chart.configure_mesh().x_desc("time (s)").y_desc("raft index").draw().map_err(err)?;
        bands(&mut chart, &near, 0.0, max_y)?;
        snapshot_bands(&mut chart, samples, max_y)?;
        for (i, (kind, p)) in promotes.iter().enumerate() {
            let color = if p.accepted { OK } else { FAIL };
            let at = secs(p.time);
            // A system with its own gate was not asked for the min: say so where it shows.
            let label = format!(
                "{kind} promote {} (min {}{})",
                if p.accepted { "accepted" } else { "refused" },
                p.min_applied_index,
                if p.asserted() { "" } else { ", not its gate" }
            );
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(at, 0.0), (at, max_y)], color.stroke_width(2))))
                .map_err(err)?;
            let font = ("sans-serif", 12).into_font().color(&color);
            // Staggered, so that promotes close in time keep their labels apart.
            let y = max_y * (0.95 - 0.08 * (i % 4) as f64);
            chart.draw_series(std::iter::once(Text::new(label, (at, y), font))).map_err(err)?;
        }
        let applied = samples.iter().filter_map(|s| Some((secs(s.time), s.applied_index? as f64)));
        let commit = samples.iter().filter_map(|s| Some((secs(s.time), s.leader_commit? as f64)));
        lines(
            &mut chart,
            [("learner applied", BLUE, applied.collect::<Vec<_>>()), ("leader commit", BLACK, commit.collect())],
        )
    })?;
    let caption = format!(
        "Learner catch-up of node {node}: its applied index (blue) against the leader's commit index (black), sampled every 100 ms; \
         grey bands: a snapshot on its way to it; green line: promote accepted, red line: premature or refused promote; red bands: faults."
    );
    Ok((chart, caption))
}

/// Grey bands over the samples in which the leader was sending `node` a snapshot.
fn snapshot_bands(chart: &mut LinearChart<'_, '_>, samples: &[CatchUpSample], max_y: f64) -> Result<(), String> {
    for pair in samples.windows(2).filter(|w| w[0].snapshot == Some(true)) {
        let band = Rectangle::new(
            [(secs(pair[0].time), 0.0), (secs(pair[1].time), max_y)],
            RGBColor(120, 120, 120).mix(0.25).filled(),
        );
        chart.draw_series(std::iter::once(band)).map_err(err)?;
    }
    Ok(())
}

/// Colours of the builds in the upgrade timeline, in order of appearance.
const BUILD_COLORS: [RGBColor; 4] =
    [RGBColor(158, 196, 235), RGBColor(46, 139, 87), RGBColor(230, 159, 0), RGBColor(148, 103, 189)];

/// A node's build as the upgrade timeline names it: the release where it reports one.
fn build_label(n: &crate::upgrade::NodeSample) -> String {
    match n.release {
        Some(r) => format!("{} release {r}", n.version),
        None => n.version.clone(),
    }
}

/// Which node ran which build when: a lane per node coloured by build (down in dark grey), the
/// moment the cluster version switched marked; `None` when the nodes never changed builds.
pub fn upgrade_timeline(status: &str, d: &Digest, faults: &[FaultWindow]) -> Result<Option<(String, String)>, String> {
    let samples = crate::upgrade::samples(status);
    let mut labels: Vec<String> = Vec::new();
    for n in samples.iter().flat_map(|s| s.nodes.values()).filter(|n| n.up) {
        let l = build_label(n);
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    let nodes: Vec<u64> = samples.first().map(|s| s.nodes.keys().copied().collect()).unwrap_or_default();
    if labels.len() < 2 || nodes.is_empty() {
        return Ok(None);
    }
    let flip = crate::upgrade::gate_flip(&samples);
    let end = secs(d.end).max(samples.last().map_or(0.0, |s| s.time_s)).max(0.001);
    let color = |l: &str| BUILD_COLORS[labels.iter().position(|x| x == l).unwrap_or(0) % BUILD_COLORS.len()];
    let lanes = nodes.len() as f64;
    let chart = svg(110 + 40 * nodes.len() as u32, |root| {
        let mut chart = lane_axes(root, end, lanes, 0.8, faults)?;
        for (i, s) in samples.iter().enumerate() {
            let next = samples.get(i + 1).map_or(end, |n| n.time_s);
            for (lane, node) in nodes.iter().enumerate() {
                let fill = match s.nodes.get(node).filter(|n| n.up) {
                    Some(n) => color(&build_label(n)),
                    None => RGBColor(90, 90, 90),
                };
                let y = lane as f64;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(s.time_s, y + 0.15), (next, y + 0.85)],
                        fill.filled(),
                    )))
                    .map_err(err)?;
            }
        }
        if let Some((version, at)) = flip {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(at, 0.0), (at, lanes + 0.1)],
                    FAIL.stroke_width(2),
                )))
                .map_err(err)?;
            let text = format!("cluster version {version}");
            chart
                .draw_series(std::iter::once(Text::new(
                    text,
                    (at, lanes + 0.45),
                    ("sans-serif", 12).into_font().color(&FAIL),
                )))
                .map_err(err)?;
        }
        let font = ("sans-serif", 13).into_font().color(&BLACK);
        for (lane, node) in nodes.iter().enumerate() {
            let at = (-end * 0.055, lane as f64 + 0.6);
            chart.plotting_area().draw(&Text::new(format!("n{node}"), at, font.clone())).map_err(err)?;
        }
        for (i, l) in labels.iter().enumerate() {
            let x = end * (0.02 + 0.3 * i as f64);
            let swatch = Rectangle::new([(x, lanes + 0.2), (x + end * 0.02, lanes + 0.6)], color(l).filled());
            chart.draw_series(std::iter::once(swatch)).map_err(err)?;
            let label = Text::new(l.clone(), (x + end * 0.025, lanes + 0.6), ("sans-serif", 12));
            chart.draw_series(std::iter::once(label)).map_err(err)?;
        }
        Ok(())
    })?;
    let gate = match flip {
        Some((v, at)) => format!("the red line marks the cluster switching to version {v} at {at:.1} s"),
        None => "the cluster version never changed".into(),
    };
    Ok(Some((
        chart,
        format!(
            "Upgrade timeline: each node's build over time (dark grey down); {gate}. Throughput and latency beneath."
        ),
    )))
}
