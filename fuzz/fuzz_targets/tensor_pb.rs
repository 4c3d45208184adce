//! `renorm::data::read_tensor_pb` on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = renorm_fuzz::write("input_0.pb", data);
    match renorm::data::read_tensor_pb(&path) {
        Ok((_, a)) => renorm_fuzz::check_array(&a),
        Err(e) => renorm_fuzz::check_error(&path, &e),
    }
});
