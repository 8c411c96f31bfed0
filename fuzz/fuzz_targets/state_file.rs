#![no_main]
// Invariants live in `clb::fuzzing::state_file`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| clb::fuzzing::state_file(data));
