//! A run's curves as a picture: `metrics.jsonl` drawn to a PNG. Above, the training loss per
//! step and the validation loss; below, validation exact match with the repository's own
//! adapter, another repository's and the mean adapter (the conditioning the run has learned
//! is the gap between them). The font is embedded, so no system fonts are needed.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use serde_json::Value;

const FONT: &str = "sans-serif";

/// The series of one metrics file.
#[derive(Default)]
struct Curves {
    loss: Vec<(f64, f64)>,
    seen_loss: Vec<(f64, f64)>,
    unseen_loss: Vec<(f64, f64)>,
    own: Vec<(f64, f64)>,
    shuffled: Vec<(f64, f64)>,
    mean: Vec<(f64, f64)>,
    unseen_own: Vec<(f64, f64)>,
}

fn read(metrics: &Path) -> Result<Curves> {
    let text = std::fs::read_to_string(metrics).with_context(|| format!("reading {}", metrics.display()))?;
    let mut c = Curves::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}: not a metrics line: {line}", metrics.display()))?;
        let Some(step) = v["step"].as_f64() else { continue };
        let push = |into: &mut Vec<(f64, f64)>, value: &Value| {
            if let Some(y) = value.as_f64().filter(|y| y.is_finite()) {
                into.push((step, y));
            }
        };
        match v["kind"].as_str() {
            Some("step") => push(&mut c.loss, &v["loss"]),
            Some("validation") => {
                push(&mut c.seen_loss, &v["seen"]["loss"]);
                push(&mut c.unseen_loss, &v["unseen"]["loss"]);
                push(&mut c.own, &v["seen"]["own"]);
                push(&mut c.shuffled, &v["seen"]["shuffled"]);
                push(&mut c.mean, &v["seen"]["mean"]);
                push(&mut c.unseen_own, &v["unseen"]["own"]);
            }
            _ => {}
        }
    }
    Ok(c)
}

/// One line of a panel.
struct Series<'a> {
    label: &'static str,
    points: &'a [(f64, f64)],
    color: RGBColor,
}

/// Draws `metrics` (a run's `metrics.jsonl`) to `png`.
pub fn draw(metrics: &Path, png: &Path) -> Result<()> {
    let c = read(metrics)?;
    if c.loss.is_empty() {
        return Err(anyhow!("{}: no training steps to draw", metrics.display()));
    }
    // Registering twice (a second plot in one process) is harmless.
    let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    let fail = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", png.display());
    let root = BitMapBackend::new(png, (1000, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (top, bottom) = root.split_vertically(420);
    let last = c.loss.last().map_or(1.0, |p| p.0).max(1.0);
    let losses = [
        Series { label: "training", points: &c.loss, color: RGBColor(150, 150, 150) },
        Series { label: "validation, training repositories", points: &c.seen_loss, color: BLUE },
        Series { label: "validation, unseen repositories", points: &c.unseen_loss, color: RED },
    ];
    let high = losses.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0f64, f64::max) * 1.05;
    panel(&top, "loss per target token", last, high.max(1e-3), &losses).map_err(|e| fail(&e))?;
    let matches = [
        Series { label: "own adapter", points: &c.own, color: BLUE },
        Series { label: "another repository's adapter", points: &c.shuffled, color: RGBColor(230, 140, 0) },
        Series { label: "mean adapter", points: &c.mean, color: RGBColor(0, 150, 70) },
        Series { label: "own adapter, unseen repositories", points: &c.unseen_own, color: RED },
    ];
    panel(&bottom, "validation exact match", last, 1.05, &matches).map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// One chart: `series` over optimiser steps 0..`last`, values 0..`high`, with a legend.
fn panel(area: &Area, title: &str, last: f64, high: f64, series: &[Series]) -> Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>> {
    let mut chart = ChartBuilder::on(area).caption(title, (FONT, 22)).margin(12).x_label_area_size(32).y_label_area_size(48).build_cartesian_2d(0.0..last, 0.0..high)?;
    chart.configure_mesh().x_desc("optimiser step").label_style((FONT, 14)).draw()?;
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)).point_size(if s.points.len() < 60 { 3 } else { 0 }))?
            .label(s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().label_font((FONT, 14)).background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    Ok(())
}
