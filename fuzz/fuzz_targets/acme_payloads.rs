//! Every ACME request payload and resource object the server or client parses: parsing
//! never panics, and what parses serializes and parses again.
#![no_main]

use certwright_proto::types::*;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn round_trip<T: DeserializeOwned + Serialize>(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let text = serde_json::to_vec(&v).expect("a parsed payload serializes");
        serde_json::from_slice::<T>(&text).expect("a serialized payload parses again");
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<NewAccount>(data);
    round_trip::<AccountUpdate>(data);
    round_trip::<NewOrder>(data);
    round_trip::<Finalize>(data);
    round_trip::<Revocation>(data);
    round_trip::<KeyChange>(data);
    round_trip::<Directory>(data);
    round_trip::<Account>(data);
    round_trip::<Order>(data);
    round_trip::<OrdersList>(data);
    round_trip::<Authorization>(data);
    round_trip::<Challenge>(data);
});
