#![no_main]
// Invariants live in `clb::fuzzing::sigv4`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| clb::fuzzing::sigv4(data));
