//! `renorm::data::read_labels` (npy or IDX, plain or gzip, chosen by content) on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = renorm_fuzz::write("labels.npy", data);
    match renorm::data::read_labels(&path) {
        Ok(labels) => assert!(labels.iter().all(|l| *l >= 0)),
        Err(e) => renorm_fuzz::check_error(&path, &e),
    }
});
