#![no_main]
// Invariants live in `clb::fuzzing::proxy_protocol`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| clb::fuzzing::proxy_protocol(data));
