//! `renorm::data::read_npz`. The first byte chooses what the rest is: 0 the archive itself; 1 or 2 the
//! bytes of one `.npy` entry, stored or deflated, in an archive made here (so the fuzzer reaches the
//! npy parser behind a zip entry reader); otherwise two such entries split at the middle.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

fn archive(entries: &[(&str, &[u8], CompressionMethod)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, method) in entries {
        zip.start_file(*name, SimpleFileOptions::default().compression_method(*method)).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (stored, deflated) = (CompressionMethod::Stored, CompressionMethod::Deflated);
    let bytes = match mode % 4 {
        0 => rest.to_vec(),
        1 => archive(&[("a.npy", rest, stored)]),
        2 => archive(&[("a.npy", rest, deflated)]),
        _ => {
            let (a, b) = rest.split_at(rest.len() / 2);
            archive(&[("a.npy", a, stored), ("b", b, deflated)])
        }
    };
    let path = renorm_fuzz::write("input.npz", &bytes);
    match renorm::data::read_npz(&path) {
        Ok(arrays) => arrays.iter().for_each(|(_, a)| renorm_fuzz::check_array(a)),
        Err(e) => renorm_fuzz::check_error(&path, &e),
    }
});
