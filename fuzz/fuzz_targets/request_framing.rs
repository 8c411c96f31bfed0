#![no_main]
// clb's request framing against an independent RFC 9112 reading; see `clb::fuzzing`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| clb::fuzzing::request_framing(data));
