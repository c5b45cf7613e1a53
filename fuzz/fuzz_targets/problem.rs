//! Problem documents: whatever parses renders and parses back to the same document.
#![no_main]

use certwright_proto::{Problem, ProblemType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = serde_json::from_slice::<Problem>(data) {
        let _ = p.to_string();
        let text = serde_json::to_vec(&p).expect("a problem renders");
        let again: Problem = serde_json::from_slice(&text).expect("a rendered problem parses");
        assert_eq!(again, p);
        let _ = p.http_status();
    }
    if let Ok(uri) = std::str::from_utf8(data) {
        if let Some(kind) = ProblemType::from_uri(uri) {
            assert_eq!(ProblemType::from_uri(&kind.uri()), Some(kind));
        }
    }
});
