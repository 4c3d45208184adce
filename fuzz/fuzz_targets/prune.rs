//! The whole `prune` job on a fuzzed model (default options: 50 % global, l2; no calibration, so nothing
//! runs the model): read, plan, load, select, renormalize, write. A model renorm writes must read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use renorm::onnx::model::Model;
use renorm::{prune_file, PruneOptions};

fuzz_target!(|data: &[u8]| {
    let dir = renorm_fuzz::scratch();
    let input = renorm_fuzz::write("model.onnx", data);
    let out_dir = dir.join("out");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir(&out_dir).unwrap();
    let output = out_dir.join("pruned.onnx");
    match prune_file(&input, &output, &PruneOptions::default()) {
        Ok(report) => {
            let written = Model::open(&output).expect("renorm's own output must read back");
            assert_eq!(written.graph.nodes.len(), Model::open(&input).unwrap().graph.nodes.len());
            assert!(report.totals.pruned <= report.totals.params);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let _ = std::fs::remove_dir_all(&out_dir);
});
