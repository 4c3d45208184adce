//! The model reader and everything `inspect` and `prune` do with a parsed model short of running it:
//! `Model::from_bytes`, target planning, reading every target's payload, then masks and renormalization.
#![no_main]

use libfuzzer_sys::fuzz_target;
use renorm::onnx::model::Model;
use renorm::prune::targets::{self, Filter};
use renorm::prune_job::{self, Scope, Selector};
use renorm::Renorm;

fuzz_target!(|data: &[u8]| {
    // The scratch folder stays empty: external-data references find nothing there.
    let path = renorm_fuzz::scratch().join("model.onnx");
    let model = match Model::from_bytes(&path, data.to_vec()) {
        Ok(model) => model,
        Err(e) => return renorm_fuzz::check_error(&path, &e),
    };
    let plan = targets::plan(&model.graph, &Filter::default());
    for t in &plan.targets {
        let _ = targets::storage(t.source, prune_job::tensor_of(&model, t.source));
        let _ = t.node_label();
    }
    let mut loaded = match prune_job::load(&model, &plan) {
        Ok(loaded) => loaded,
        Err(e) => return assert!(!e.to_string().is_empty()),
    };
    for l in &loaded {
        assert_eq!(l.values.len(), l.target.params(), "{}", l.target.weight);
    }
    // Every selector on the same weights; the last one's masks are then applied with l2.
    let selectors = [
        Selector::Sparsity { sparsity: 0.5, scope: Scope::Global },
        Selector::Sparsity { sparsity: 0.9, scope: Scope::Layer },
        Selector::Sparsity { sparsity: 0.3, scope: Scope::Unit },
        Selector::Pattern { n: 2, m: 4 },
    ];
    let mut keeps = Vec::new();
    for s in selectors {
        let selections = prune_job::select(&loaded, s);
        assert_eq!(selections.len(), loaded.len());
        keeps = selections.into_iter().map(|s| s.keep).collect();
    }
    for (l, keep) in loaded.iter_mut().zip(&keeps) {
        assert_eq!(keep.len(), l.values.len());
        prune_job::apply(l, keep, Renorm::L2);
    }
});
