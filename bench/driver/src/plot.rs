//! SVG plots of a run: the idle latency CDFs and the burst's progress.

use std::path::Path;

use plotters::prelude::*;

use crate::scenarios::burst::Burst;
use crate::scenarios::idle::Idle;
use crate::Result;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// (x, fraction ≤ x) of a sample.
fn cdf(samples: &[f64]) -> Vec<(f64, f64)> {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    v.iter().enumerate().map(|(i, x)| (*x, (i + 1) as f64 / n)).collect()
}

/// `idle-latency-cdf.svg`: flip → StopDtsJob (solid) and flip → Stopped
/// (thin) per background size.
pub fn idle_cdf(path: &Path, idle: &[Idle]) -> Result<()> {
    let max = idle
        .iter()
        .flat_map(|i| i.stopped_samples.iter().chain(&i.stop_call_samples))
        .fold(1.0_f64, |a, b| a.max(*b));
    // The tail beyond p99 would squash the body of the curve.
    let xmax = (max * 1.05).min(
        idle.iter()
            .filter_map(|i| i.flip_to_stopped_ms.as_ref().map(|s| s.p99 * 1.5))
            .fold(1.0, f64::max),
    );
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Idle latency: flip → StopDtsJob (thick), flip → Stopped (thin)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..xmax, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("milliseconds after the flip PATCH returned")
        .y_desc("fraction of flips")
        .draw()?;
    for (k, i) in idle.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        chart
            .draw_series(LineSeries::new(cdf(&i.stop_call_samples), c.stroke_width(3)))?
            .label(format!("{} background: StopDtsJob", i.background))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
        chart
            .draw_series(LineSeries::new(cdf(&i.stopped_samples), c.stroke_width(1)))?
            .label(format!("{} background: Stopped", i.background))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// `burst-progress.svg`: jobs Stopped over time since the first flip.
pub fn burst_progress(path: &Path, b: &Burst) -> Result<()> {
    let xmax = b.progress.last().map_or(1.0, |p| p.0).max(0.1) * 1.05;
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Burst: {} jobs × {} direction(s), DTS latency {} ms",
                b.jobs, b.directions, b.dts_latency_ms
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, 0..b.jobs.max(1))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first flip")
        .y_desc("jobs Stopped")
        .draw()?;
    let mut points = vec![(0.0, 0)];
    points.extend(b.progress.iter().copied());
    chart.draw_series(LineSeries::new(points, COLORS[0].stroke_width(2)))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_ends_at_one() {
        let c = cdf(&[3.0, 1.0, 2.0]);
        assert_eq!(c, vec![(1.0, 1.0 / 3.0), (2.0, 2.0 / 3.0), (3.0, 1.0)]);
    }
}
