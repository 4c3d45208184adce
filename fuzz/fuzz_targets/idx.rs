//! `renorm::data::read_idx`, plain and gzip. The first byte chooses: even, the rest is the file as is
//! (plain IDX, or gzip when it starts with 1f 8b); odd, the rest gzip-compressed here (so the fuzzer
//! reaches the IDX parser behind the decoder), a second gzip member appended when it is 3 mod 4.
#![no_main]

use std::io::Write;

use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (bytes, name) = match mode % 4 {
        0 | 2 => (rest.to_vec(), "input.idx"),
        1 => (gzip(rest), "input.idx.gz"),
        _ => {
            let (a, b) = rest.split_at(rest.len() / 2);
            ([gzip(a), gzip(b)].concat(), "input.idx.gz")
        }
    };
    let path = renorm_fuzz::write(name, &bytes);
    match renorm::data::read_idx(&path) {
        Ok(a) => renorm_fuzz::check_array(&a),
        Err(e) => renorm_fuzz::check_error(&path, &e),
    }
});
