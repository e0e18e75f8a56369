//! benchplot: draws the benchmark's per-server traffic over time as SVG.
//!
//! Usage: `benchplot <console log> <out.svg> [title]`. Reads the
//! `RSWAP-TS run=<tag> record ...` lines the benchmark's guest scripts
//! print (`rswapctl record`), draws one panel per run: pages per second
//! each memory server served (loads, thick) and took (stores, thin) over
//! time. Prints each run's share of loads per server.

mod series;

use plotters::prelude::*;
use std::process::exit;

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn draw(runs: &[series::Run], out: &str, title: &str) -> Result<(), Box<dyn std::error::Error>> {
    let h = 60 + 260 * runs.len() as u32;
    let root = SVGBackend::new(out, (960, h)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    for (run, area) in runs.iter().zip(root.split_evenly((runs.len(), 1))) {
        let all = || run.servers.values();
        let t_max = all()
            .flat_map(|s| s.t.iter())
            .fold(1.0f64, |a, &b| a.max(b));
        let y_max = all()
            .flat_map(|s| s.loads_s.iter().chain(s.stores_s.iter()))
            .fold(1.0f64, |a, &b| a.max(b));
        let shares: Vec<String> = run
            .load_shares()
            .iter()
            .map(|(n, f)| format!("node {n} {:.0}%", 100.0 * f))
            .collect();
        let mut chart = ChartBuilder::on(&area)
            .caption(
                format!("{}: share of loads {}", run.tag, shares.join(", ")),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..t_max, 0f64..y_max * 1.1)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("pages/s")
            .draw()?;
        for (i, (n, s)) in run.servers.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            let pts = |v: &[f64]| {
                s.t.iter()
                    .copied()
                    .zip(v.iter().copied())
                    .collect::<Vec<_>>()
            };
            chart
                .draw_series(LineSeries::new(pts(&s.loads_s), c.stroke_width(3)))?
                .label(format!("node {n} loads"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3))
                });
            chart
                .draw_series(LineSeries::new(
                    pts(&s.stores_s),
                    c.mix(0.6).stroke_width(1),
                ))?
                .label(format!("node {n} stores"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.mix(0.6)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.len() > 3 {
        eprintln!("usage: benchplot <console log> <out.svg> [title]");
        exit(2);
    }
    let text = match std::fs::read(&args[0]) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            eprintln!("benchplot: {}: {e}", args[0]);
            exit(1);
        }
    };
    let runs = series::parse(&text);
    if runs.is_empty() {
        eprintln!("benchplot: {}: no RSWAP-TS samples", args[0]);
        exit(1);
    }
    let title = args
        .get(2)
        .map_or("rswap: per-server traffic", |s| s.as_str());
    if let Err(e) = draw(&runs, &args[1], title) {
        eprintln!("benchplot: drawing {}: {e}", args[1]);
        exit(1);
    }
    for r in &runs {
        let shares: Vec<String> = r
            .load_shares()
            .iter()
            .map(|(n, f)| format!("node{n}={:.2}", f))
            .collect();
        println!("benchplot: run={} load_share {}", r.tag, shares.join(" "));
    }
    println!("benchplot: wrote {}", args[1]);
}
