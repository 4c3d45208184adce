//! `renorm::data::read_npy` on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = renorm_fuzz::write("input.npy", data);
    match renorm::data::read_npy(&path) {
        Ok(a) => renorm_fuzz::check_array(&a),
        Err(e) => renorm_fuzz::check_error(&path, &e),
    }
});
