//! Progress on stderr for the long jobs (sweep, batch): a bar when stderr is a terminal, one plain line
//! per item otherwise (logs), nothing with --quiet.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use renorm::report::{BatchEntry, SweepPoint};

pub enum Progress {
    Bar(ProgressBar),
    Lines,
    Quiet,
}

impl Progress {
    pub fn new(quiet: bool, unit: &str) -> Progress {
        if quiet {
            return Progress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines;
        }
        let bar = ProgressBar::new(0);
        let template = format!("{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{msg}}");
        bar.set_style(
            ProgressStyle::with_template(&template).expect("a valid template").progress_chars("=> "),
        );
        Progress::Bar(bar)
    }

    fn item(&self, done: usize, total: usize, line: String) {
        match self {
            Progress::Bar(b) => {
                b.set_length(total as u64);
                b.set_position(done as u64);
                b.set_message(line);
            }
            Progress::Lines => eprintln!("[{done}/{total}] {line}"),
            Progress::Quiet => {}
        }
    }

    /// How many items the bar counts to (batch: known once the models are found).
    pub fn total(&self, n: usize) {
        if let Progress::Bar(b) = self {
            b.set_length(n as u64);
        }
    }

    /// A sweep point finished (`i` of `n`, 0-based).
    pub fn point(&self, i: usize, n: usize, p: &SweepPoint) {
        let metric = p.metric().map_or("not validated".to_string(), |m| format!("{:.2}%", 100.0 * m));
        self.item(i + 1, n, format!("{} {} {}: {metric}", p.renorm, p.scope, p.sparsity));
    }

    /// A batch model finished (the bar's length is unknown up front: it counts models done).
    pub fn model(&self, e: &BatchEntry) {
        let line = match &e.error {
            Some(err) => format!("{}: failed: {err}", e.model),
            None => {
                format!("{}: {} ({:.1}% sparse, {:.1} s)", e.model, e.status, 100.0 * e.sparsity, e.seconds)
            }
        };
        match self {
            Progress::Bar(b) => {
                b.inc(1);
                b.set_message(line);
            }
            Progress::Lines => eprintln!("{line}"),
            Progress::Quiet => {}
        }
    }

    pub fn finish(&self) {
        if let Progress::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}
