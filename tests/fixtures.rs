//! The bundled, really trained MNIST models: tract runs what renorm writes, sparsity 0 changes no
//! output, and pruning keeps the models useful. Dense accuracy is checked against the figure the
//! training script measured with its own numpy forward pass (fixtures/train/accuracy.json).

mod common;

use std::path::Path;

use common::*;
use renorm::runtime::{Array, Runner};
use renorm::{PruneOptions, Renorm, Scope, Selector};

fn logits(model: &Path, x: &Array) -> Array {
    Runner::load(model, std::slice::from_ref(&x.shape))
        .unwrap()
        .run(std::slice::from_ref(x))
        .unwrap()
        .remove(0)
}

fn accuracy(logits: &Array, labels: &[i64]) -> f64 {
    let classes = logits.shape[1];
    let hits = logits
        .data
        .chunks(classes)
        .zip(labels)
        .filter(|(row, &label)| {
            let best = (0..classes).fold(0, |b, i| if row[i] > row[b] { i } else { b });
            best as i64 == label
        })
        .count();
    hits as f64 / labels.len() as f64
}

fn recorded_accuracy(model: &str) -> f64 {
    let text = std::fs::read_to_string(fixtures().join("train/accuracy.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[model]["test_1000"].as_f64().unwrap()
}

fn prune(input: &Path, out: &Path, sparsity: f64, renorm: Renorm) {
    let opts = PruneOptions {
        selector: Selector::Sparsity { sparsity, scope: Scope::Global },
        renorm,
        ..Default::default()
    };
    renorm::prune_file(input, out, &opts).unwrap();
}

#[test]
fn dense_accuracy_matches_the_training_script() {
    let (x, y) = (mnist_images(), mnist_labels());
    for name in ["mnist_mlp", "mnist_cnn"] {
        let acc = accuracy(&logits(&fixtures().join(format!("{name}.onnx")), &x), &y);
        assert!(
            (acc - recorded_accuracy(name)).abs() < 1e-9,
            "{name}: tract {acc}, numpy {}",
            recorded_accuracy(name)
        );
    }
}

#[test]
fn sparsity_zero_leaves_every_output_identical() {
    let dir = tempfile::tempdir().unwrap();
    let x = mnist_images();
    for name in ["mnist_mlp.onnx", "mnist_cnn.onnx"] {
        let out = dir.path().join(name);
        prune(&fixtures().join(name), &out, 0.0, Renorm::L2);
        assert_eq!(logits(&out, &x), logits(&fixtures().join(name), &x), "{name}");
    }
}

#[test]
fn pruned_models_run_and_stay_useful() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = (mnist_images(), mnist_labels());
    // The CNN has 20 k weights, the MLP 266 k: it affords less.
    for (name, sparsity) in [("mnist_mlp", 0.8), ("mnist_cnn", 0.5)] {
        let input = fixtures().join(format!("{name}.onnx"));
        let dense = recorded_accuracy(name);
        let mut accs = Vec::new();
        for renorm in [Renorm::None, Renorm::L2] {
            let out = dir.path().join(format!("{name}-{renorm:?}.onnx"));
            prune(&input, &out, sparsity, renorm);
            accs.push(accuracy(&logits(&out, &x), &y));
        }
        eprintln!("{name}: dense {dense}, {sparsity} global: none {}, l2 {}", accs[0], accs[1]);
        assert!(accs[1] > dense - 0.05, "{name}: l2 at {sparsity} fell to {} from {dense}", accs[1]);
    }
}
