#![no_main]
// Invariants live in `clb::fuzzing::chunked_and_response`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| clb::fuzzing::chunked_and_response(data));
